# slurmjwt.sh - export SLURM_JWT from the per-user token cache in every
# POSIX shell (sh, dash, bash, zsh, ksh93); sourced from /etc/profile.d.
# Anything but the fast path, and the notes on what it does and why:
# /usr/lib/slurmjwt/profile.d/slurmjwt.sh. Contracts: docs/internals.md.

# Fast path: a shell that is not interactive (`bash -lc`, scripts), enabled,
# not root (`-O /`), with a fresh cache of the helper's key. It puts the
# Slurm command wrappers first on PATH. It comes first and stays short:
# bash, zsh and dash parse a sourced file one command at a time, so it
# exports and returns before the rest is even parsed. Builtins only. It
# accepts a subset of what the library's _slurmjwt_read accepts (the same checks,
# state `fresh` only, no uid lookup in dash and ksh); anything else falls
# through to the full logic (the notes say what it checks and why).
case $- in
*i*) ;;
*)
    _slurmjwt_d=
    if [ "${SLURMJWT_DISABLE:-0}" = 0 ] && [ ! -O / ] && [ ! -e /etc/slurm/slurmjwt.disable ]; then
        # The Slurm command wrappers first on PATH: every Slurm command this
        # shell or its children start fetches a live token itself.
        case :${PATH:-}: in
        *:/usr/lib/slurmjwt/bin:*) ;;
        *) if [ -d /usr/lib/slurmjwt/bin ]; then PATH=/usr/lib/slurmjwt/bin${PATH:+:$PATH}; export PATH; fi ;;
        esac
        if [ -n "${SLURMJWT_CACHE_DIR:-}" ]; then
            _slurmjwt_d=$SLURMJWT_CACHE_DIR
        elif [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -O "$XDG_RUNTIME_DIR" ]; then
            _slurmjwt_d=$XDG_RUNTIME_DIR/slurmjwt
        elif [ -n "${BASH_VERSION:-}${ZSH_VERSION:-}" ]; then
            # shellcheck disable=SC3028 # only read in bash and zsh, where it is set
            _slurmjwt_d=/run/slurmjwt/users/${UID:-}
        fi
    fi
    _slurmjwt_s=
    if [ -n "$_slurmjwt_d" ] && [ ! -L "$_slurmjwt_d" ] && [ -O "$_slurmjwt_d" ] &&
            [ -f "$_slurmjwt_d/token" ] && [ ! -L "$_slurmjwt_d/token" ] &&
            [ -O "$_slurmjwt_d/token" ]; then
        # The cache line, this boot's id, the uptime, the helper's key id.
        _slurmjwt_v='' _slurmjwt_b='' _slurmjwt_r='' _slurmjwt_e='' _slurmjwt_p='' _slurmjwt_x=''
        _slurmjwt_k='' _slurmjwt_t='' _slurmjwt_n='' _slurmjwt_z='' _slurmjwt_i='' _slurmjwt_c=''
        _slurmjwt_f=${SLURMJWT_KEY_DIR:-/run/slurmjwt/key}/id
        if [ -z "${ZSH_VERSION:-}" ]; then
            if { { IFS=' ' read -r _slurmjwt_v _slurmjwt_b _slurmjwt_r _slurmjwt_e _slurmjwt_p \
                    _slurmjwt_x _slurmjwt_k _slurmjwt_t _slurmjwt_n _slurmjwt_z; } <"$_slurmjwt_d/token" &&
                  { read -r _slurmjwt_i; } </proc/sys/kernel/random/boot_id &&
                  { read -r _slurmjwt_c; } <"$_slurmjwt_f" &&
                  { read -r _slurmjwt_s _slurmjwt_i2; } </proc/uptime; } 2>/dev/null; then :
            else
                _slurmjwt_s=
            fi
        else
            # zsh's read makes a system call per byte; zsh reads $(<file) at
            # once and without a fork, but drops the final newline: the word
            # `end` shows the line is whole. In zsh's own options (no
            # GLOB_SUBST, KSH_ARRAYS...), split on spaces only, one line only.
            eval '() {
                emulate -L zsh
                local l; local -a a
                { l=$(<$1) && _slurmjwt_i=$(</proc/sys/kernel/random/boot_id) &&
                    _slurmjwt_c=$(<$2) && _slurmjwt_s=$(</proc/uptime); } 2>/dev/null || return 0
                a=(${(s: :)l})
                if [[ ${#a} == 9 && $l != *[[:cntrl:]]* && $_slurmjwt_c != *[[:cntrl:]]* ]]; then
                    _slurmjwt_v=$a[1] _slurmjwt_b=$a[2] _slurmjwt_r=$a[3] _slurmjwt_e=$a[4]
                    _slurmjwt_p=$a[5] _slurmjwt_x=$a[6] _slurmjwt_k=$a[7] _slurmjwt_t=$a[8]
                    _slurmjwt_n=$a[9]
                fi
                return 0
            } "$_slurmjwt_d/token" "$_slurmjwt_f"'
        fi
        # Whole, this boot's, of the key in use.
        [ "$_slurmjwt_v $_slurmjwt_b $_slurmjwt_n" = "slurmjwt2 $_slurmjwt_i end" ] &&
            [ -z "$_slurmjwt_z" ] && [ -n "$_slurmjwt_k" ] && [ "$_slurmjwt_k" = "$_slurmjwt_c" ] ||
            _slurmjwt_s=
        _slurmjwt_s=${_slurmjwt_s%%.*}
        # Digits only, and short, before -lt (see _slurmjwt_read); fields
        # are never empty once the token is there.
        case $_slurmjwt_s in ''|*[!0123456789]*) _slurmjwt_s= ;; esac
        case $_slurmjwt_r in *[!0123456789]*|?????????????*) _slurmjwt_s= ;; esac
        case $_slurmjwt_e in *[!0123456789]*|?????????????*) _slurmjwt_s= ;; esac
        case $_slurmjwt_p in *[!0123456789]*|?????????????*) _slurmjwt_s= ;; esac
        case $_slurmjwt_x in 0|1) ;; *) _slurmjwt_s= ;; esac
        case $_slurmjwt_k in *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-]*) _slurmjwt_s= ;; esac
        case $_slurmjwt_t in
        *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-]*|*.*.*.*) _slurmjwt_s= ;;
        ?*.?*.?*) ;;
        *) _slurmjwt_s= ;;
        esac
    fi
    if [ -n "$_slurmjwt_s" ] && [ "${#_slurmjwt_t}" -le 7168 ] &&
            [ "$_slurmjwt_s" -lt "$_slurmjwt_r" ]; then
        if [ "$_slurmjwt_x" = 1 ]; then
            SLURM_JWT=$_slurmjwt_t
            export SLURM_JWT
        elif [ -n "${SLURM_JWT+set}" ] && { [ -z "$SLURM_JWT" ] ||
                [ "$SLURM_JWT" = "$_slurmjwt_t" ] || [ "$SLURM_JWT" = "${_slurmjwt_tok:-}" ]; }; then
            unset SLURM_JWT
        fi
        unset _slurmjwt_d _slurmjwt_s _slurmjwt_v _slurmjwt_b _slurmjwt_r _slurmjwt_e \
            _slurmjwt_p _slurmjwt_x _slurmjwt_k _slurmjwt_t _slurmjwt_n _slurmjwt_z _slurmjwt_i \
            _slurmjwt_i2 _slurmjwt_c _slurmjwt_f _slurmjwt_next _slurmjwt_tok _slurmjwt_msg \
            _slurmjwt_kid
        return 0
    fi
    unset _slurmjwt_d _slurmjwt_s _slurmjwt_v _slurmjwt_b _slurmjwt_r _slurmjwt_e \
        _slurmjwt_p _slurmjwt_x _slurmjwt_k _slurmjwt_t _slurmjwt_n _slurmjwt_z _slurmjwt_i \
        _slurmjwt_i2 _slurmjwt_c _slurmjwt_f
    ;;
esac

# The full logic, in its own file so that the fast path stays quick to parse.
if [ -r "/usr/lib/slurmjwt/profile.d/slurmjwt.sh" ]; then
    # shellcheck source-path=SCRIPTDIR source=lib/slurmjwt.sh
    . "/usr/lib/slurmjwt/profile.d/slurmjwt.sh"
fi
