# mk/c.mk - build, test and fuzz the C code; included by the top Makefile.
#
#   make c           build/c/pam_slurmjwt.so, build/c/slurmjwt-wrap and
#                    build/c/slurmjwt-userdir
#   make c-test      C unit tests (wire format, tokens, cache, client deadlines, the
#                    wrapper's slurmjwt.conf) under ASan+UBSan
#                    and valgrind; only the PAM entry points are exported
#   make c-harness   the programs the Python tests drive (parse_response, cachetool)
#   make c-fuzz      libFuzzer run of every parser, bounded by C_FUZZ_SECONDS (needs clang)
#   make c-clean     remove what the targets above built
#
# Works standalone too: make -f mk/c.mk c

CC ?= cc
CFLAGS ?=
SYSCONFDIR ?= /etc
LIBDIR ?= /usr/lib/slurmjwt
C_BUILD := build/c
# sshd's compiled-in PATH for users (OpenSSH --with-default-path), which the
# PAM module puts after the wrappers for an sshd session without a PATH in the
# PAM environment (pam_slurmjwt(8) sshd_path=): a property of the
# distribution's OpenSSH build, so chosen for the distribution built on
# (ID and ID_LIKE of /etc/os-release; OS_FAMILY=debian|rhel to choose), or
# SSHD_PATH= itself; "none" (other distributions) leaves such a PATH alone.
SSHD_PATH_debian := /usr/local/bin:/usr/bin:/bin:/usr/games
SSHD_PATH_rhel := /usr/local/bin:/usr/bin:/usr/local/sbin:/usr/sbin
OS_FAMILY ?= $(shell . /etc/os-release 2>/dev/null; for id in $$ID $$ID_LIKE; do \
	case $$id in (debian) echo debian; break;; (rhel|fedora) echo rhel; break;; esac; done)
SSHD_PATH ?= $(or $(SSHD_PATH_$(OS_FAMILY)),none)
PAM_SO := $(C_BUILD)/pam_slurmjwt.so
WRAP := $(C_BUILD)/slurmjwt-wrap
USERDIR := $(C_BUILD)/slurmjwt-userdir
COMMON_SRCS := c/common/protocol.c c/common/client.c c/common/token.c c/common/cache.c \
	c/common/userdir.c
COMMON_HDRS := c/common/protocol.h c/common/client.h c/common/token.h c/common/cache.h \
	c/common/userdir.h
PAM_SRCS := c/pam/pam_slurmjwt.c c/pam/handoff.c $(COMMON_SRCS)
PAM_HDRS := c/pam/handoff.h $(COMMON_HDRS)
WRAP_SRCS := c/wrap/slurmjwt-wrap.c c/wrap/conf.c c/wrap/clusters.c $(COMMON_SRCS)
WRAP_HDRS := c/wrap/conf.h c/wrap/clusters.h $(COMMON_HDRS)
USERDIR_SRCS := c/userdir/slurmjwt-userdir.c c/common/userdir.c c/common/client.c
USERDIR_HDRS := c/common/userdir.h c/common/client.h c/common/cache.h
# Hardening and warnings are not optional: they come before $(CFLAGS) only so
# that extra flags (e.g. -g) can be added; -O2 is needed by _FORTIFY_SOURCE.
C_WARN := -Wall -Wextra -Werror
C_HARDEN := -O2 -fstack-protector-strong -D_FORTIFY_SOURCE=2
# The installed paths the C code names (slurmjwt.conf, the wrapper
# directory, sshd's PATH): a header rewritten only when they change, so that
# `make install SYSCONFDIR=... LIBDIR=...` rebuilds what depends on them.
C_PATHS := $(C_BUILD)/paths.h
PAM_CFLAGS := $(C_WARN) $(C_HARDEN) -fPIC -fvisibility=hidden -include $(C_PATHS)
PAM_LDFLAGS := -shared -Wl,-z,relro,-z,now -Wl,-z,defs
WRAP_CFLAGS := $(C_WARN) $(C_HARDEN) -fPIE -include $(C_PATHS)
WRAP_LDFLAGS := -pie -Wl,-z,relro,-z,now
# Test programs: same warnings, sanitizers instead of fortify.
C_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
C_TEST_CFLAGS := $(C_WARN) -O1 -g
C_VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=all
C_FUZZ_CC ?= clang
C_FUZZ_SECONDS ?= 30
C_TESTS := test_protocol test_token test_cache test_client test_conf test_clusters

.PHONY: c c-test c-harness c-fuzz c-clean c-paths

c: $(PAM_SO) $(WRAP) $(USERDIR)

$(C_BUILD):
	mkdir -p $@

$(C_PATHS): c-paths
	@:

c-paths: | $(C_BUILD)
	@printf '#define SLURMJWT_CONF_PATH "%s"\n#define SLURMJWT_WRAPPERS "%s"\n#define SLURMJWT_SSHD_PATH "%s"\n' \
		"$(SYSCONFDIR)/slurm/slurmjwt.conf" "$(LIBDIR)/bin" "$(SSHD_PATH)" > $(C_PATHS).new
	@if cmp -s $(C_PATHS).new $(C_PATHS); then rm $(C_PATHS).new; else mv $(C_PATHS).new $(C_PATHS); fi

$(PAM_SO): $(PAM_SRCS) $(PAM_HDRS) $(C_PATHS) | $(C_BUILD)
	$(CC) $(PAM_CFLAGS) $(CFLAGS) $(PAM_LDFLAGS) -o $@ $(PAM_SRCS) -lpam

$(WRAP): $(WRAP_SRCS) $(WRAP_HDRS) $(C_PATHS) | $(C_BUILD)
	$(CC) $(WRAP_CFLAGS) $(CFLAGS) $(WRAP_LDFLAGS) -o $@ $(WRAP_SRCS)

$(USERDIR): $(USERDIR_SRCS) $(USERDIR_HDRS) $(C_PATHS) | $(C_BUILD)
	$(CC) $(WRAP_CFLAGS) $(CFLAGS) $(WRAP_LDFLAGS) -o $@ $(USERDIR_SRCS)

# A test of a front end's own file names it in TEST_SRCS.
$(C_BUILD)/test_conf $(C_BUILD)/plain_conf: TEST_SRCS := c/wrap/conf.c
$(C_BUILD)/test_conf $(C_BUILD)/plain_conf: c/wrap/conf.c c/wrap/conf.h
$(C_BUILD)/test_clusters $(C_BUILD)/plain_clusters: TEST_SRCS := c/wrap/clusters.c
$(C_BUILD)/test_clusters $(C_BUILD)/plain_clusters: c/wrap/clusters.c c/wrap/clusters.h

$(C_BUILD)/test_%: c/tests/test_%.c c/tests/check.h $(COMMON_SRCS) $(COMMON_HDRS) | $(C_BUILD)
	$(CC) $(C_TEST_CFLAGS) $(C_SAN) -o $@ $< $(TEST_SRCS) $(COMMON_SRCS)

$(C_BUILD)/plain_%: c/tests/test_%.c c/tests/check.h $(COMMON_SRCS) $(COMMON_HDRS) | $(C_BUILD)
	$(CC) $(C_TEST_CFLAGS) -o $@ $< $(TEST_SRCS) $(COMMON_SRCS)

# The Python tests (tests/unit/test_c_*.py) drive these.
$(C_BUILD)/parse_response $(C_BUILD)/cachetool: $(C_BUILD)/%: c/tests/%.c $(COMMON_SRCS) $(COMMON_HDRS) | $(C_BUILD)
	$(CC) $(C_TEST_CFLAGS) $(C_SAN) -o $@ $< $(COMMON_SRCS)

c-harness: $(C_BUILD)/parse_response $(C_BUILD)/cachetool

c-test: c $(addprefix $(C_BUILD)/,$(C_TESTS)) $(addprefix $(C_BUILD)/plain_,$(patsubst test_%,%,$(C_TESTS)))
	@for t in $(C_TESTS); do out=$$($(C_BUILD)/$$t) || { echo "$$out"; exit 1; }; \
		echo "$$t: $$(echo "$$out" | tail -n 1)"; done
	@for t in $(patsubst test_%,%,$(C_TESTS)); do $(C_VALGRIND) $(C_BUILD)/plain_$$t > /dev/null || exit 1; done
	@# Only the PAM entry points may be exported from the module.
	@nm -D --defined-only $(PAM_SO) | awk '$$2 == "T" && $$3 !~ /^pam_sm_/ { print "exported: " $$3; bad = 1 } END { exit bad }'

$(C_BUILD)/fuzz_parsers: c/tests/fuzz_parsers.c $(COMMON_SRCS) $(COMMON_HDRS) | $(C_BUILD)
	@command -v $(C_FUZZ_CC) > /dev/null || { echo "c-fuzz needs clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
	$(C_FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-o $@ c/tests/fuzz_parsers.c $(COMMON_SRCS)

c-fuzz: $(C_BUILD)/fuzz_parsers
	rm -rf $(C_BUILD)/corpus && mkdir -p $(C_BUILD)/corpus
	cp c/tests/fuzz-seeds/* $(C_BUILD)/corpus/
	$(C_BUILD)/fuzz_parsers -max_total_time=$(C_FUZZ_SECONDS) -max_len=9000 \
		-timeout=5 -print_final_stats=1 -artifact_prefix=$(C_BUILD)/ $(C_BUILD)/corpus

c-clean:
	rm -rf $(C_BUILD)
