# slurmjwt.sh (library) - the full logic of /etc/profile.d/slurmjwt.sh,
# sourced by it whenever its fast path does not apply: an interactive shell,
# a cache to refresh, root, a disabled shim. Contracts (cache format,
# refresh CLI, exit codes): docs/internals.md.
#
# Warm path: builtins only (read, test, case): no fork, no exec, no $(...).
# It exports the cache's token when the cache line is well formed (format 2,
# ending in `end`), from this boot, not past refresh_up, of the key the
# helper signs with (the id in ${SLURMJWT_KEY_DIR:-/run/slurmjwt/key}/id), in
# a directory and file that are owned by the user and not symlinks. It
# cannot check the token's `sun` (no builtin decodes the payload): an entry a
# previous owner of this uid left is exported until its refresh_up, when
# `slurmjwt-refresh --if-needed` finds it stale and replaces it. It also
# puts the Slurm command wrappers (/usr/lib/slurmjwt/bin) first on PATH. The shim cannot check mode bits (test(1) has no
# operator for them); slurmjwt-refresh checks modes on every write and read,
# and its exit 6 ("cache unsafe") makes the shim distrust the cache.
# Anything else runs `slurmjwt-refresh --if-needed` once (it bounds its own
# time, so no timeout(1) here), then reads the cache again with the same
# checks: the shim never evals what a program printed.
#
# SLURM_JWT already in the environment (from PAM at login, or a parent
# shell) cannot be decoded with builtins, so it is never trusted as is:
# - a valid cache replaces it;
# - otherwise, after a failed refresh, a well-formed inherited token is given
#   to `slurmjwt-refresh --store-stdin` (on stdin, never argv), which checks
#   owner and expiry in Python and stores it; the shim then exports it from
#   the cache like any other;
# - if that fails too, SLURM_JWT is unset: an empty or expired SLURM_JWT makes
#   every Slurm command fail without saying why, no SLURM_JWT falls back to
#   munge where that works.
# Export=never (cache <export> 0): SLURM_JWT is unset when it is empty, holds
# the cache's token, or holds the token this shell exported; any other value
# was set by the user and is left alone.
#
# Does nothing when: SLURMJWT_DISABLE is set to anything but "" or "0" (user);
# /etc/slurm/slurmjwt.disable exists (admin); the user is root (never minted
# for by default; run slurmjwt-refresh by hand); slurmjwt-refresh says the
# user is denied (exit 5), in which case the environment is left untouched.
# Failures are explained once, on stderr, in interactive shells only; nothing
# is ever written to stdout (scp, sftp and rsync stay intact).
#
# Names this file uses (all others it creates are removed before it returns):
#   SLURM_JWT            exported, or unset, as above
#   SLURMJWT_DISABLE     read: user switch
#   SLURMJWT_CACHE_DIR   read: cache directory override (tests, users)
#   SLURMJWT_KEY_DIR     read: where the helper publishes its key id (tests)
#   SLURMJWT_REFRESH     read: refresh program (default: slurmjwt-refresh on PATH)
#   PATH                 /usr/lib/slurmjwt/bin put first when missing
# Left behind in interactive bash and zsh only (the prompt hook):
#   _slurmjwt_hook       function in PROMPT_COMMAND / precmd_functions
#   _slurmjwt_read       function: one read of the cache, with every check
#   _slurmjwt_keyid      function: one read of the helper's key id
#   _slurmjwt_next       uptime second of the hook's next full check
#   _slurmjwt_tok        the token this shell exported (not exported itself)
#   _slurmjwt_kid        the key id of that token
#   _slurmjwt_msg        the last message shown, so it is shown once
# Temporaries while it runs: _slurmjwt_* (unset again; never exported).
#
# The hook costs one read of /proc/uptime and one of the key id per prompt;
# it re-reads the cache once the exported token reaches its refresh_up or
# the helper's key changes (and runs the refresh only if no other shell
# already did), after a failure every 300 s.

# Sets _slurmjwt_key to the id of the key the helper signs with ("" when it
# cannot be read: then no cached token counts). One builtin read.
_slurmjwt_keyid() {
    _slurmjwt_key=
    if { { read -r _slurmjwt_key; } <"${SLURMJWT_KEY_DIR:-/run/slurmjwt/key}/id"; } 2>/dev/null; then :
    else
        _slurmjwt_key=
    fi
}

# Sets _slurmjwt_up, _uid (empty for root or unknown), _dir, _boot, _key and
# the cache's fields, and _slurmjwt_state: fresh (before refresh_up), margin
# (before expire_up), or bad.
_slurmjwt_read() {
    _slurmjwt_up=
    if { { read -r _slurmjwt_up _slurmjwt_v; } </proc/uptime; } 2>/dev/null; then
        _slurmjwt_up=${_slurmjwt_up%.*}
    fi
    case $_slurmjwt_up in ''|*[!0123456789]*) _slurmjwt_up= ;; esac

    # The real uid: bash and zsh keep it in $UID (read-only there); dash and
    # ksh have none, so read the shell's own /proc/self/status (`id -u`
    # would fork). Root is skipped.
    _slurmjwt_uid=
    if [ -n "${BASH_VERSION:-}${ZSH_VERSION:-}" ]; then
        # shellcheck disable=SC3028 # only read in bash and zsh, where it is set
        _slurmjwt_uid=${UID:-}
    elif { while IFS='	 ' read -r _slurmjwt_k _slurmjwt_uid _slurmjwt_v; do
            case $_slurmjwt_k in Uid:) break ;; esac
            _slurmjwt_uid=
        done </proc/self/status; } 2>/dev/null; then :; fi
    case $_slurmjwt_uid in ''|0|*[!0123456789]*) _slurmjwt_uid= ;; esac

    if [ -n "${SLURMJWT_CACHE_DIR:-}" ]; then
        _slurmjwt_dir=$SLURMJWT_CACHE_DIR
    elif [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -d "$XDG_RUNTIME_DIR" ] &&
            [ -O "$XDG_RUNTIME_DIR" ]; then
        _slurmjwt_dir=$XDG_RUNTIME_DIR/slurmjwt
    else
        _slurmjwt_dir=/run/slurmjwt/users/$_slurmjwt_uid
    fi
    _slurmjwt_boot=
    if { { read -r _slurmjwt_boot; } </proc/sys/kernel/random/boot_id; } 2>/dev/null; then :; fi
    _slurmjwt_keyid
    _slurmjwt_state=bad _slurmjwt_v='' _slurmjwt_x='' _slurmjwt_bid='' _slurmjwt_rup=''
    _slurmjwt_eup='' _slurmjwt_exp='' _slurmjwt_ckid='' _slurmjwt_ctok='' _slurmjwt_end=''
    _slurmjwt_xtra=''
    _slurmjwt_f=$_slurmjwt_dir/token
    # read fails on a line without its newline, and a torn one has no `end`.
    if [ -n "$_slurmjwt_uid" ] && [ -n "$_slurmjwt_up" ] && [ -n "$_slurmjwt_boot" ] &&
            [ -d "$_slurmjwt_dir" ] && [ ! -L "$_slurmjwt_dir" ] && [ -O "$_slurmjwt_dir" ] &&
            [ -f "$_slurmjwt_f" ] && [ ! -L "$_slurmjwt_f" ] && [ -O "$_slurmjwt_f" ] &&
            { { IFS=' ' read -r _slurmjwt_v _slurmjwt_bid _slurmjwt_rup _slurmjwt_eup \
                _slurmjwt_exp _slurmjwt_x _slurmjwt_ckid _slurmjwt_ctok _slurmjwt_end \
                _slurmjwt_xtra; } <"$_slurmjwt_f"; } 2>/dev/null &&
            [ "$_slurmjwt_v" = slurmjwt2 ] && [ "$_slurmjwt_bid" = "$_slurmjwt_boot" ] &&
            [ "$_slurmjwt_end" = end ] && [ -z "$_slurmjwt_xtra" ] &&
            [ -n "$_slurmjwt_ckid" ] && [ "$_slurmjwt_ckid" = "$_slurmjwt_key" ] &&
            [ "${#_slurmjwt_ctok}" -le 7168 ]; then
        _slurmjwt_state=ok
    fi
    # Digits only, and short, before any -lt: ksh93's test evaluates its
    # operands as arithmetic, which would run $(...) found in them.
    for _slurmjwt_n in "$_slurmjwt_rup" "$_slurmjwt_eup" "$_slurmjwt_exp"; do
        case $_slurmjwt_n in
        ''|*[!0123456789]*|?????????????*) _slurmjwt_state=bad ;;
        esac
    done
    case $_slurmjwt_x in 0|1) ;; *) _slurmjwt_state=bad ;; esac
    case $_slurmjwt_ckid in *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-]*) _slurmjwt_state=bad ;; esac
    case $_slurmjwt_ctok in
    *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-]*|*.*.*.*) _slurmjwt_state=bad ;;
    ?*.?*.?*) ;;
    *) _slurmjwt_state=bad ;;
    esac
    if [ "$_slurmjwt_state" = ok ]; then
        if [ "$_slurmjwt_up" -lt "$_slurmjwt_rup" ]; then
            _slurmjwt_state=fresh
        elif [ "$_slurmjwt_up" -lt "$_slurmjwt_eup" ]; then
            _slurmjwt_state=margin
        else
            _slurmjwt_state=bad
        fi
    fi
}

_slurmjwt_hook() {
    _slurmjwt_rc=$?
    _slurmjwt_up=
    if { { read -r _slurmjwt_up _slurmjwt_v; } </proc/uptime; } 2>/dev/null; then
        _slurmjwt_up=${_slurmjwt_up%.*}
    fi
    case $_slurmjwt_up in ''|*[!0123456789]*) _slurmjwt_up= ;; esac
    case ${_slurmjwt_next:-0} in ''|*[!0123456789]*) _slurmjwt_next=0 ;; esac
    # Until the next check is due, only a change of the helper's key counts.
    _slurmjwt_keyid
    if [ "${SLURMJWT_DISABLE:-0}" != 0 ] || { [ -n "$_slurmjwt_up" ] &&
            [ "$_slurmjwt_up" -lt "$_slurmjwt_next" ] &&
            [ "$_slurmjwt_key" = "${_slurmjwt_kid:-$_slurmjwt_key}" ]; }; then
        unset _slurmjwt_up _slurmjwt_v _slurmjwt_key
        return "$_slurmjwt_rc"
    fi

    # Passes: the cache as found; after --if-needed; after --store-stdin of an
    # inherited SLURM_JWT. Each reads the cache again with the same checks.
    _slurmjwt_state=bad _slurmjwt_code=0 _slurmjwt_err='' _slurmjwt_ctok=''
    _slurmjwt_r=${SLURMJWT_REFRESH:-slurmjwt-refresh}
    for _slurmjwt_pass in cache refresh store; do
        case $_slurmjwt_pass in
        refresh)
            # stderr captured for the message, stdout dropped, stdin closed
            # so the refresh cannot eat input meant for `ssh host cmd`.
            if _slurmjwt_err=$("$_slurmjwt_r" --if-needed 2>&1 >/dev/null </dev/null); then
                _slurmjwt_code=0
            else
                _slurmjwt_code=$?
            fi
            ;;
        store)
            case ${SLURM_JWT:-} in
            *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-]*|*.*.*.*) break ;;
            ?*.?*.?*) ;;
            *) break ;;
            esac
            # Pointless for the cache's own token or one this shell set.
            if [ "$SLURM_JWT" = "$_slurmjwt_ctok" ] ||
                    [ "$SLURM_JWT" = "${_slurmjwt_tok:-}" ]; then
                break
            fi
            if printf '%s\n' "$SLURM_JWT" |
                    "$_slurmjwt_r" --store-stdin >/dev/null 2>&1; then :; fi
            ;;
        esac
        case $_slurmjwt_code in
        5) break ;;
        6) _slurmjwt_state=bad; break ;;
        esac

        _slurmjwt_read
        # Root (or an unknown uid): never refresh; the first pass ends it.
        [ -n "$_slurmjwt_uid" ] || break
        case $_slurmjwt_state in
        fresh) break ;;
        # Inside the margin: refresh, but a failed refresh keeps the
        # still-valid token.
        margin) [ "$_slurmjwt_pass" = cache ] || break ;;
        esac
    done

    _slurmjwt_v=
    # The key this check saw: until it changes again, the next check waits
    # for _slurmjwt_next (a helper down after a key change is not asked at
    # every prompt).
    _slurmjwt_kid=$_slurmjwt_key
    if [ -z "$_slurmjwt_uid" ] || [ "$_slurmjwt_code" = 5 ]; then
        # Root or denied: leave the environment alone, check again rarely.
        _slurmjwt_next=$((${_slurmjwt_up:-0} + 3600))
    elif [ "$_slurmjwt_state" = fresh ] || [ "$_slurmjwt_state" = margin ]; then
        if [ "$_slurmjwt_x" = 1 ]; then
            SLURM_JWT=$_slurmjwt_ctok
            export SLURM_JWT
            _slurmjwt_tok=$_slurmjwt_ctok
        elif [ -n "${SLURM_JWT+set}" ] && { [ -z "$SLURM_JWT" ] ||
                [ "$SLURM_JWT" = "$_slurmjwt_ctok" ] || [ "$SLURM_JWT" = "${_slurmjwt_tok:-}" ]; }; then
            unset SLURM_JWT
        fi
        if [ "$_slurmjwt_state" = fresh ]; then
            _slurmjwt_next=$_slurmjwt_rup
        else
            _slurmjwt_next=$((_slurmjwt_up + 60))
            # Never keep exporting past expiry: look again when it expires.
            if [ "$_slurmjwt_eup" -lt "$_slurmjwt_next" ]; then
                _slurmjwt_next=$_slurmjwt_eup
            fi
            [ "$_slurmjwt_code" = 0 ] ||
                _slurmjwt_v="slurmjwt: cannot refresh SLURM_JWT, keeping the current one until it expires: ${_slurmjwt_err:-exit $_slurmjwt_code}"
        fi
    else
        if [ -n "${SLURM_JWT+set}" ]; then
            unset SLURM_JWT
        fi
        _slurmjwt_next=$((${_slurmjwt_up:-0} + 300))
        if [ "$_slurmjwt_code" = 0 ]; then
            _slurmjwt_err="no usable token in $_slurmjwt_dir/token"
        fi
        _slurmjwt_v="slurmjwt: SLURM_JWT not set: ${_slurmjwt_err:-exit $_slurmjwt_code}"
    fi
    # Say it once, only to a person: never in scripts, never on stdout.
    if [ -n "$_slurmjwt_v" ] && [ "$_slurmjwt_v" != "${_slurmjwt_msg:-}" ]; then
        case $- in *i*) printf '%s\n' "$_slurmjwt_v" >&2 ;; esac
    fi
    _slurmjwt_msg=$_slurmjwt_v
    unset _slurmjwt_up _slurmjwt_v _slurmjwt_uid _slurmjwt_dir _slurmjwt_boot \
        _slurmjwt_state _slurmjwt_code _slurmjwt_err _slurmjwt_ctok _slurmjwt_r \
        _slurmjwt_pass _slurmjwt_f _slurmjwt_bid _slurmjwt_rup _slurmjwt_eup \
        _slurmjwt_exp _slurmjwt_x _slurmjwt_xtra _slurmjwt_n _slurmjwt_k _slurmjwt_key \
        _slurmjwt_ckid _slurmjwt_end
    # Hand back the caller's $? (a prompt may show it) without keeping a
    # variable for it: positional parameters are the function's own.
    set -- "$_slurmjwt_rc"
    unset _slurmjwt_rc
    return "$1"
}

if [ "${SLURMJWT_DISABLE:-0}" = 0 ] && [ ! -e /etc/slurm/slurmjwt.disable ]; then
    # The Slurm command wrappers first on PATH (not for root, who gets no
    # token): every Slurm command started from here fetches a live token.
    case :${PATH:-}: in
    *:/usr/lib/slurmjwt/bin:*) ;;
    *) if [ ! -O / ] && [ -d /usr/lib/slurmjwt/bin ]; then
           PATH=/usr/lib/slurmjwt/bin${PATH:+:$PATH}
           export PATH
       fi ;;
    esac
    _slurmjwt_next=0
    # `|| :` also keeps a caller's `set -e` out of the function.
    _slurmjwt_hook >/dev/null || :
    case $-:${BASH_VERSION:+bash}${ZSH_VERSION:+zsh} in
    *i*:bash)
        # Newline, not ";": the user's PROMPT_COMMAND may end in one.
        case ${PROMPT_COMMAND:-} in
        *_slurmjwt_hook*) ;;
        *) PROMPT_COMMAND="${PROMPT_COMMAND:+$PROMPT_COMMAND
}_slurmjwt_hook" ;;
        esac
        ;;
    *i*:zsh)
        # zsh-only syntax, hidden from the other shells' parsers.
        eval 'case " ${precmd_functions[*]-} " in
        *" _slurmjwt_hook "*) ;;
        *) precmd_functions+=(_slurmjwt_hook) ;;
        esac'
        ;;
    *)
        unset -f _slurmjwt_hook _slurmjwt_read _slurmjwt_keyid
        unset _slurmjwt_next _slurmjwt_tok _slurmjwt_msg _slurmjwt_kid
        ;;
    esac
else
    unset -f _slurmjwt_hook _slurmjwt_read _slurmjwt_keyid
fi
