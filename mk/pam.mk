# mk/pam.mk - build, test and fuzz the C PAM module; included by the top Makefile.
#
#   make pam        build pam/pam_slurmjwt.so
#   make pam-test   C unit tests of the wire-format parser, under ASan+UBSan and valgrind
#   make pam-fuzz   libFuzzer run of the parser, bounded by PAM_FUZZ_SECONDS (needs clang)
#   make pam-clean  remove what the targets above built
#
# Works standalone too: make -f mk/pam.mk pam

CC ?= cc
CFLAGS ?=
PAM_SO := pam/pam_slurmjwt.so
PAM_BUILD := build/pam
PAM_SRCS := pam/pam_slurmjwt.c pam/handoff.c pam/protocol.c
PAM_HDRS := pam/protocol.h pam/pam_slurmjwt.h
# Hardening and warnings are not optional: they come before $(CFLAGS) only so
# that extra flags (e.g. -g) can be added; -O2 is needed by _FORTIFY_SOURCE.
PAM_CFLAGS := -Wall -Wextra -Werror -O2 -fstack-protector-strong \
	-D_FORTIFY_SOURCE=2 -fPIC -fvisibility=hidden
PAM_LDFLAGS := -shared -Wl,-z,relro,-z,now -Wl,-z,defs
PAM_LIBS := -lpam
# Test programs: same warnings, sanitizers instead of fortify.
PAM_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
PAM_TEST_CFLAGS := -Wall -Wextra -Werror -O1 -g
PAM_VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=all
PAM_FUZZ_CC ?= clang
PAM_FUZZ_SECONDS ?= 30

.PHONY: pam pam-test pam-harness pam-fuzz pam-clean

pam: $(PAM_SO)

$(PAM_SO): $(PAM_SRCS) $(PAM_HDRS)
	$(CC) $(PAM_CFLAGS) $(CFLAGS) $(PAM_LDFLAGS) -o $@ $(PAM_SRCS) $(PAM_LIBS)

$(PAM_BUILD):
	mkdir -p $@

$(PAM_BUILD)/test_protocol: pam/test_protocol.c pam/protocol.c $(PAM_HDRS) | $(PAM_BUILD)
	$(CC) $(PAM_TEST_CFLAGS) $(PAM_SAN) -o $@ pam/test_protocol.c pam/protocol.c

$(PAM_BUILD)/test_protocol_plain: pam/test_protocol.c pam/protocol.c $(PAM_HDRS) | $(PAM_BUILD)
	$(CC) $(PAM_TEST_CFLAGS) -o $@ pam/test_protocol.c pam/protocol.c

# The Python parser tests (tests/unit/test_pam_parser.py) drive this one.
$(PAM_BUILD)/parse_response: pam/parse_response.c pam/protocol.c $(PAM_HDRS) | $(PAM_BUILD)
	$(CC) $(PAM_TEST_CFLAGS) $(PAM_SAN) -o $@ pam/parse_response.c pam/protocol.c

pam-harness: $(PAM_BUILD)/parse_response

pam-test: $(PAM_SO) $(PAM_BUILD)/test_protocol $(PAM_BUILD)/test_protocol_plain
	$(PAM_BUILD)/test_protocol
	$(PAM_VALGRIND) $(PAM_BUILD)/test_protocol_plain > /dev/null
	@# Only the PAM entry points may be exported from the module.
	@nm -D --defined-only $(PAM_SO) | awk '$$2 == "T" && $$3 !~ /^pam_sm_/ { print "exported: " $$3; bad = 1 } END { exit bad }'

$(PAM_BUILD)/fuzz_protocol: pam/fuzz_protocol.c pam/protocol.c $(PAM_HDRS) | $(PAM_BUILD)
	@command -v $(PAM_FUZZ_CC) > /dev/null || { echo "pam-fuzz needs clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
	$(PAM_FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-o $@ pam/fuzz_protocol.c pam/protocol.c

pam-fuzz: $(PAM_BUILD)/fuzz_protocol
	rm -rf $(PAM_BUILD)/corpus && mkdir -p $(PAM_BUILD)/corpus
	cp pam/fuzz-seeds/* $(PAM_BUILD)/corpus/
	$(PAM_BUILD)/fuzz_protocol -max_total_time=$(PAM_FUZZ_SECONDS) -max_len=2048 \
		-timeout=5 -print_final_stats=1 -artifact_prefix=$(PAM_BUILD)/ $(PAM_BUILD)/corpus

pam-clean:
	rm -f $(PAM_SO)
	rm -rf $(PAM_BUILD)
