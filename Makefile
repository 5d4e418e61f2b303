# pam-slurmjwt: build, check, test, benchmark, demo.
#
#   make demo    bring up a cluster in containers (directory, controller, a login node
#                with systemd) and show it working
#                (make demo-keys shows its keys; make demo-down removes it)
#   make test    install test dependencies (root, Debian 12), run every check
#                and every test; this is what .ci/run calls
#   make check   static checks only: ruff, mypy, shellcheck, systemd-analyze,
#                promtool (the alert rules and their tests), the C code (PAM
#                module, wrapper) with -Werror
#   make test-releases
#                the compatibility matrix on the Slurm releases Debian does not
#                ship (23.11, 24.05, 25.05, 25.11), each built from SchedMD's
#                tarball in SLURM_SOURCES (root, Docker; slow: not in make test)
#   make bench   throughput/latency of the helper vs `scontrol token`, shell
#                start-up, refresh and ssh login cost (needs root)
#   make install the whole system integration (root; PREFIX, DESTDIR honoured)

SHELL := /bin/bash
PYTHON_SYSTEM := /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Versions the checks were written against; newer linters add new rules.
RUFF_VERSION := 0.17.6
MYPY_VERSION := 2.4.1

# Where `make install` puts things. The Python package goes into a private
# directory run by the system interpreter in isolated mode (-I), so neither
# a virtualenv nor PYTHONPATH can change what runs as SlurmUser or in PAM.
PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib/slurmjwt
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= /usr/lib/systemd/system
USERUNITDIR ?= /usr/lib/systemd/user
# fish reads packages' snippets here, for login and interactive shells alike.
FISHCONFDIR ?= $(PREFIX)/share/fish/vendor_conf.d
TMPFILESDIR ?= /usr/lib/tmpfiles.d
# Alert rules and the Grafana dashboard, for sites to copy into their own.
PROMDIR ?= $(PREFIX)/share/pam-slurmjwt/prometheus
SYSTEM_PYTHON ?= /usr/bin/python3
# Debian's /etc/csh.login reads /etc/csh/login.d, not profile.d (RHEL's reads
# profile.d/*.csh): a link to the csh shim goes there where it exists.
CSH_LOGIN_D ?= $(if $(wildcard /etc/csh/login.d),$(SYSCONFDIR)/csh/login.d)
# PAM modules: /usr/lib64/security on RHEL, the multiarch directory on Debian.
PAMDIR ?= $(shell for d in /usr/lib64/security /usr/lib/$$($(CC) -print-multiarch 2>/dev/null)/security /lib/$$($(CC) -print-multiarch 2>/dev/null)/security /usr/lib/security; do if [ -d "$$d" ]; then echo "$$d"; break; fi; done)
INSTALL := install

include mk/c.mk

.PHONY: all deps venv check lint typecheck shellcheck units prometheus-rules test test-unit \
	test-integration test-releases bench demo demo-keys demo-down clean install uninstall \
	man deb deb-lint rpm rpmlint selinux dist

all: c

deps:
	@if [ "$$(id -u)" = 0 ]; then sh tests/setup-deps.sh; \
	else echo "make deps: not root, skipping Debian packages" >&2; fi
	@$(MAKE) -s venv

venv: $(VENV)/.stamp

$(VENV)/.stamp: Makefile
	$(PYTHON_SYSTEM) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check \
		"ruff==$(RUFF_VERSION)" "mypy==$(MYPY_VERSION)" "pytest>=7" \
		python-pam pamela docker
	touch $@

lint: venv
	$(VENV)/bin/ruff check pam_slurmjwt tests packaging

typecheck: venv
	$(VENV)/bin/mypy pam_slurmjwt

shellcheck:
	shellcheck -x -s sh profile.d/slurmjwt.sh profile.d/lib/slurmjwt.sh tests/setup-deps.sh
	shellcheck -x -s bash profile.d/slurmjwt.sh profile.d/lib/slurmjwt.sh
	shellcheck -x -s ksh profile.d/slurmjwt.sh profile.d/lib/slurmjwt.sh
	fish --no-execute profile.d/slurmjwt.fish
	@for f in $$(find packaging -name '*.sh' 2>/dev/null); do shellcheck "$$f" || exit 1; done
	shellcheck -s sh packaging/debian/pam-slurmjwt.preinst packaging/debian/pam-slurmjwt.postinst \
		packaging/debian/pam-slurmjwt.prerm packaging/debian/pam-slurmjwt.postrm

units:
	sh packaging/systemd/verify-units.sh

# The alert rules: promtool (Debian's prometheus package) checks them and
# runs their unit tests (packaging/prometheus/slurmjwt.rules.test.yml).
prometheus-rules:
	promtool check rules packaging/prometheus/slurmjwt.rules.yml
	cd packaging/prometheus && promtool test rules slurmjwt.rules.test.yml

check: lint typecheck shellcheck units prometheus-rules c selinux

test-unit: venv c c-harness
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: venv c
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

test: deps check c-test c-harness
	$(MAKE) -s c-fuzz C_FUZZ_SECONDS=20
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

# tests/integration/test_matrix.py on the releases built from source: the
# tarballs (tests/demo/releases.py pins their sha256) are looked for in
# SLURM_SOURCES, default ../shared/slurm-src; RELEASES=all adds Debian's three,
# RELEASES=slurm-24.05,sid picks some. Images are cached like the demo's.
test-releases: deps
	$(if $(SLURM_SOURCES),SLURMJWT_SLURM_SOURCES=$(abspath $(SLURM_SOURCES))) \
	SLURMJWT_MATRIX=$(or $(RELEASES),source) \
		$(PY) -m pytest -q tests/integration/test_matrix.py tests/integration/test_matrix_keys.py \
		$(PYTEST_ARGS)

bench: deps c
	$(PY) -m tests.bench $(BENCH_ARGS)

# The demo cluster in Docker (tests/demo): bookworm by default,
# DEMO_RELEASE=trixie or sid for Slurm 24.11 or 26.05, slurm-23.11,
# slurm-24.05, slurm-25.05 or slurm-25.11 for a release built from source.
demo: deps
	$(PY) -m tests.demo up $(if $(DEMO_RELEASE),--release $(DEMO_RELEASE))

# The key layout in the same cluster: a key per login node, the controller's
# JWKS, a key switch the caches follow, one node revoked (tests/demo/keyring.py).
demo-keys: deps
	$(PY) -m tests.demo keys $(if $(DEMO_RELEASE),--release $(DEMO_RELEASE))

demo-down: venv
	$(PY) -m tests.demo down

man:
	$(SYSTEM_PYTHON) -I packaging/man/generate.py build/man

# Wrappers: the system interpreter, isolated, with the private library first.
define wrapper
printf '#!%s -I\n# %s: installed by pam-slurmjwt\nimport sys\nsys.path.insert(0, "%s")\nfrom %s import main\nsys.exit(main())\n' \
	"$(SYSTEM_PYTHON)" "$(1)" "$(LIBDIR)" "$(2)" > "$(DESTDIR)$(3)/$(1)"
chmod 0755 "$(DESTDIR)$(3)/$(1)"
endef

install: c man
	@test -n "$(PAMDIR)" || { echo "make install: no PAM module directory found; set PAMDIR=" >&2; exit 1; }
	$(INSTALL) -d -m 0755 "$(DESTDIR)$(LIBDIR)/pam_slurmjwt" "$(DESTDIR)$(LIBDIR)/pam_slurmjwt/doctor" \
		"$(DESTDIR)$(LIBDIR)/profile.d" "$(DESTDIR)$(BINDIR)" \
		"$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(PAMDIR)" "$(DESTDIR)$(SYSCONFDIR)/profile.d" \
		"$(DESTDIR)$(SYSCONFDIR)/pam.d" "$(DESTDIR)$(SYSCONFDIR)/slurm" "$(DESTDIR)$(UNITDIR)" \
		"$(DESTDIR)$(USERUNITDIR)" "$(DESTDIR)$(TMPFILESDIR)" "$(DESTDIR)$(LIBDIR)/bin" \
		"$(DESTDIR)$(FISHCONFDIR)" "$(DESTDIR)$(PROMDIR)" \
		"$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(MANDIR)/man5" "$(DESTDIR)$(MANDIR)/man8"
	$(INSTALL) -m 0644 pam_slurmjwt/*.py "$(DESTDIR)$(LIBDIR)/pam_slurmjwt/"
	$(INSTALL) -m 0644 pam_slurmjwt/doctor/*.py "$(DESTDIR)$(LIBDIR)/pam_slurmjwt/doctor/"
	$(SYSTEM_PYTHON) -I -m compileall -q -d "$(LIBDIR)/pam_slurmjwt" "$(DESTDIR)$(LIBDIR)/pam_slurmjwt"
	$(call wrapper,slurmjwt,pam_slurmjwt.cli,$(BINDIR))
	$(call wrapper,slurmjwt-refresh,pam_slurmjwt.refresh,$(BINDIR))
	$(call wrapper,slurmjwt-helper,pam_slurmjwt.helper,$(SBINDIR))
	$(INSTALL) -m 0644 $(PAM_SO) "$(DESTDIR)$(PAMDIR)/pam_slurmjwt.so"
	@# The Slurm command wrapper; LIBDIR/bin gets its links (slurmjwt wrappers).
	$(INSTALL) -m 0755 $(WRAP) "$(DESTDIR)$(LIBDIR)/slurmjwt-wrap"
	@# Root's maker of users' /run caches outside a session (slurmjwt-userdir.socket).
	$(INSTALL) -m 0755 $(USERDIR) "$(DESTDIR)$(LIBDIR)/slurmjwt-userdir"
	@# The shims' fast paths in profile.d, their full logic in LIBDIR.
	$(INSTALL) -m 0644 profile.d/lib/slurmjwt.sh profile.d/lib/slurmjwt.csh "$(DESTDIR)$(LIBDIR)/profile.d/"
	@# Built aside, then installed (a rename): a login never reads half a shim.
	mkdir -p build/profile.d
	for f in slurmjwt.sh slurmjwt.csh slurmjwt.fish; do \
		sed 's|/usr/lib/slurmjwt/|$(subst |,\|,$(subst &,\&,$(LIBDIR)))/|g' \
			"profile.d/$$f" > "build/profile.d/$$f" || exit 1; done
	$(INSTALL) -m 0644 build/profile.d/slurmjwt.sh build/profile.d/slurmjwt.csh "$(DESTDIR)$(SYSCONFDIR)/profile.d/"
	$(INSTALL) -m 0644 build/profile.d/slurmjwt.fish "$(DESTDIR)$(FISHCONFDIR)/slurmjwt.fish"
	if [ -n "$(CSH_LOGIN_D)" ]; then \
		$(INSTALL) -d -m 0755 "$(DESTDIR)$(CSH_LOGIN_D)" && \
		ln -sfn "$(SYSCONFDIR)/profile.d/slurmjwt.csh" "$(DESTDIR)$(CSH_LOGIN_D)/slurmjwt.csh"; fi
	$(INSTALL) -m 0644 packaging/pam.d/slurmjwt "$(DESTDIR)$(SYSCONFDIR)/pam.d/slurmjwt"
	$(INSTALL) -m 0755 packaging/slurm/taskprolog.sh "$(DESTDIR)$(LIBDIR)/taskprolog.sh"
	$(INSTALL) -m 0644 packaging/slurm/cli_filter.lua "$(DESTDIR)$(LIBDIR)/cli_filter.lua"
	$(INSTALL) -m 0644 packaging/systemd/slurmjwt-helper.socket packaging/systemd/slurmjwt-helper-root.socket \
		packaging/systemd/slurmjwt-helper.service packaging/systemd/run-slurmjwt-users.mount \
		packaging/systemd/slurmjwt-tokenfile@.service packaging/systemd/slurmjwt-tokenfile@.timer \
		packaging/systemd/slurmjwt-userdir.socket packaging/systemd/slurmjwt-userdir@.service \
		"$(DESTDIR)$(UNITDIR)/"
	$(INSTALL) -m 0644 packaging/systemd/slurmjwt-refresh.service packaging/systemd/slurmjwt-refresh.timer "$(DESTDIR)$(USERUNITDIR)/"
	$(INSTALL) -m 0644 packaging/tmpfiles.d/slurmjwt.conf "$(DESTDIR)$(TMPFILESDIR)/slurmjwt.conf"
	$(INSTALL) -m 0644 packaging/prometheus/slurmjwt.rules.yml packaging/prometheus/slurmjwt-dashboard.json \
		"$(DESTDIR)$(PROMDIR)/"
	$(INSTALL) -m 0644 build/man/*.1 "$(DESTDIR)$(MANDIR)/man1/"
	$(INSTALL) -m 0644 build/man/*.5 "$(DESTDIR)$(MANDIR)/man5/"
	$(INSTALL) -m 0644 build/man/*.8 "$(DESTDIR)$(MANDIR)/man8/"
	$(INSTALL) -m 0644 build/man/slurmjwt.conf.sample "$(DESTDIR)$(LIBDIR)/slurmjwt.conf.sample"
	@# Never overwrite an admin's configuration.
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/slurm/slurmjwt.conf" ]; then \
		echo "make install: keeping existing $(SYSCONFDIR)/slurm/slurmjwt.conf"; \
	else $(INSTALL) -m 0644 build/man/slurmjwt.conf.sample "$(DESTDIR)$(SYSCONFDIR)/slurm/slurmjwt.conf"; fi
	@# One link per Slurm command installed here; packages do this in postinst.
	@if [ -z "$(DESTDIR)" ]; then "$(BINDIR)/slurmjwt" wrappers --update; fi

uninstall: man
	rm -rf "$(DESTDIR)$(LIBDIR)"
	rm -f "$(DESTDIR)$(BINDIR)/slurmjwt" "$(DESTDIR)$(BINDIR)/slurmjwt-refresh" \
		"$(DESTDIR)$(SBINDIR)/slurmjwt-helper" "$(DESTDIR)$(PAMDIR)/pam_slurmjwt.so" \
		"$(DESTDIR)$(SYSCONFDIR)/profile.d/slurmjwt.sh" "$(DESTDIR)$(SYSCONFDIR)/profile.d/slurmjwt.csh" \
		"$(DESTDIR)$(SYSCONFDIR)/csh/login.d/slurmjwt.csh" \
		$(if $(CSH_LOGIN_D),"$(DESTDIR)$(CSH_LOGIN_D)/slurmjwt.csh") "$(DESTDIR)$(SYSCONFDIR)/pam.d/slurmjwt" \
		"$(DESTDIR)$(UNITDIR)/slurmjwt-helper.socket" "$(DESTDIR)$(UNITDIR)/slurmjwt-helper.service" \
		"$(DESTDIR)$(UNITDIR)/slurmjwt-helper-root.socket" "$(DESTDIR)$(UNITDIR)/run-slurmjwt-users.mount" \
		"$(DESTDIR)$(UNITDIR)/slurmjwt-tokenfile@.service" "$(DESTDIR)$(UNITDIR)/slurmjwt-tokenfile@.timer" \
		"$(DESTDIR)$(UNITDIR)/slurmjwt-userdir.socket" "$(DESTDIR)$(UNITDIR)/slurmjwt-userdir@.service" \
		"$(DESTDIR)$(FISHCONFDIR)/slurmjwt.fish" \
		"$(DESTDIR)$(USERUNITDIR)/slurmjwt-refresh.service" "$(DESTDIR)$(USERUNITDIR)/slurmjwt-refresh.timer" \
		"$(DESTDIR)$(TMPFILESDIR)/slurmjwt.conf" \
		"$(DESTDIR)$(PROMDIR)/slurmjwt.rules.yml" "$(DESTDIR)$(PROMDIR)/slurmjwt-dashboard.json" \
		"$(DESTDIR)$(MANDIR)/man1/slurmjwt.1" "$(DESTDIR)$(MANDIR)/man1/slurmjwt-refresh.1" \
		"$(DESTDIR)$(MANDIR)/man5/slurmjwt.conf.5" "$(DESTDIR)$(MANDIR)/man8/slurmjwt-helper.8" \
		"$(DESTDIR)$(MANDIR)/man8/pam_slurmjwt.8"
	-rmdir "$(DESTDIR)$(PROMDIR)" "$(DESTDIR)$(dir $(PROMDIR))" 2>/dev/null
	@# The configuration goes only if it is still the untouched sample.
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/slurm/slurmjwt.conf" ] && cmp -s build/man/slurmjwt.conf.sample "$(DESTDIR)$(SYSCONFDIR)/slurm/slurmjwt.conf"; then \
		rm -f "$(DESTDIR)$(SYSCONFDIR)/slurm/slurmjwt.conf"; \
	elif [ -e "$(DESTDIR)$(SYSCONFDIR)/slurm/slurmjwt.conf" ]; then \
		echo "make uninstall: keeping $(SYSCONFDIR)/slurm/slurmjwt.conf (it was edited)"; fi

VERSION := $(shell sed -n 's/^version = //p' setup.cfg)
DEB_ARCH = $(shell dpkg --print-architecture)
DEB := build/pam-slurmjwt_$(VERSION)_$(DEB_ARCH).deb
DEB_SRC := build/deb-src/pam-slurmjwt-$(VERSION)

# The Debian package, built by dpkg-buildpackage and debhelper from a copy of
# the tree with packaging/debian as its debian/ (the copy keeps the tree
# clean: dpkg-buildpackage writes into the parent directory). Depends on
# Debian's own python3-jwt. lintian reviews it: make deb-lint.
deb:
	@test "$$(sed -n '1s/^pam-slurmjwt (\([^)]*\)).*/\1/p' packaging/debian/changelog)" = "$(VERSION)" \
		|| { echo "make deb: packaging/debian/changelog does not start with version $(VERSION) (setup.cfg); add its entry" >&2; exit 1; }
	rm -rf build/deb-src
	mkdir -p $(DEB_SRC)
	tar -C . --exclude=./build --exclude=./.venv --exclude=./.git --exclude=__pycache__ \
		--exclude=./.pytest_cache --exclude=./.mypy_cache --exclude=./.ruff_cache -cf - . \
		| tar -C $(DEB_SRC) -xf -
	cp -a packaging/debian $(DEB_SRC)/debian
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b
	mv build/deb-src/pam-slurmjwt_$(VERSION)_$(DEB_ARCH).deb $(DEB)

deb-lint: deb
	lintian --fail-on error --info $(DEB)

# A source tarball, and an RPM built from it with packaging/rpm's spec (the
# version setup.cfg names). Where rpm has no systemd macros (Debian), those
# of packaging/rpm/macros.systemd-el9 stand in, as RHEL 9 defines them. On
# Debian there is no RPM database of the build dependencies to check them
# against: RPM_BUILD_FLAGS=--nodeps there (README, "Building the packages").
RPM_BUILD_FLAGS ?= $(if $(wildcard /etc/debian_version),--nodeps)
RPM_SPEC := build/rpm/SPECS/pam-slurmjwt.spec

dist:
	mkdir -p build
	git archive --format=tar.gz --prefix=pam-slurmjwt-$(VERSION)/ \
		-o build/pam-slurmjwt-$(VERSION).tar.gz HEAD

rpm: dist
	rm -rf build/rpm
	mkdir -p build/rpm/SOURCES build/rpm/SPECS
	cp build/pam-slurmjwt-$(VERSION).tar.gz build/rpm/SOURCES/
	sed 's/^Version:.*/Version:        $(VERSION)/' packaging/rpm/pam-slurmjwt.spec > $(RPM_SPEC)
	rpmbuild -bb $(RPM_BUILD_FLAGS) --define "_topdir $(CURDIR)/build/rpm" \
		$(if $(shell rpm --eval '%{?systemd_post:1}'),,--load packaging/rpm/macros.systemd-el9) \
		$(RPM_SPEC)

# rpmlint on the spec and the built RPM: no errors (README lists the warnings).
rpmlint: rpm
	rpmlint -r packaging/rpm/rpmlintrc $(RPM_SPEC) build/rpm/RPMS/*/pam-slurmjwt-*.rpm

# The SELinux policy module (packaging/selinux), built with the policy's
# devel Makefile: selinux-policy-dev on Debian, selinux-policy-devel on RHEL.
SELINUX_DEVEL ?= /usr/share/selinux/devel/Makefile

selinux:
	rm -rf build/selinux
	mkdir -p build/selinux
	cp packaging/selinux/slurmjwt.te packaging/selinux/slurmjwt.fc packaging/selinux/slurmjwt.if build/selinux/
	$(MAKE) -s -C build/selinux -f $(SELINUX_DEVEL) slurmjwt.pp

clean: c-clean
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
