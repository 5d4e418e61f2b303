# slurmjwt.csh (library) - the full logic of /etc/profile.d/slurmjwt.csh,
# sourced by it whenever its fast path does not apply. The same policy as
# slurmjwt.sh (read the header of its library); contracts in docs/internals.md.
#
# csh cannot read a file without forking, so the warm path `source`s the
# cache's token.csh (written only by slurmjwt-refresh, slurmjwt-wrap or
# pam_slurmjwt's child, as the user) and the helper's key id, id.csh (only
# when neither it nor its directory may be written by group or others), and
# tells the time by truncating the cache's .clock with a builtin echo and
# reading its mtime (`-M`): no fork, no exec. The check is against the
# epoch: refresh at exp - (expire_up + 5 - refresh_up), expire at exp - 5
# (internals.md), so csh needs no boot id. Unlike sh, tcsh can read mode
# bits (`-P`): directory and files must have no group/other bits.
# Anything else runs `slurmjwt-refresh --if-needed` once (it bounds itself),
# then reads the cache again with the same checks. An inherited SLURM_JWT is
# handled as in slurmjwt.sh: replaced by a valid cache, else offered to
# `slurmjwt-refresh --store-stdin`, else unset.
#
# Does nothing when SLURMJWT_DISABLE is set to anything but "" or "0",
# /etc/slurm/slurmjwt.disable exists, the user is root, or the refresh says
# the user is denied (exit 5). Messages: stderr, interactive shells only;
# never stdout. No prompt hook in csh: a new shell or `source` re-exports.
# Needs tcsh ($uid, `-P`, `-M`); other csh variants do nothing.
#
# Names: SLURM_JWT (set or unset); SLURMJWT_DISABLE, SLURMJWT_CACHE_DIR and
# SLURMJWT_REFRESH (read). Temporaries _slurmjwt_* are unset before it ends.

set _slurmjwt_on = 1
if ( $?SLURMJWT_DISABLE ) then
    if ( "$SLURMJWT_DISABLE" != "" && "$SLURMJWT_DISABLE" != "0" ) set _slurmjwt_on = 0
endif
if ( -e /etc/slurm/slurmjwt.disable || ! $?tcsh || ! $?uid ) set _slurmjwt_on = 0
if ( $_slurmjwt_on ) then
    if ( $uid == 0 ) set _slurmjwt_on = 0
endif

if ( $_slurmjwt_on ) then
    if ( -d /usr/lib/slurmjwt/bin && " $path " !~ "* /usr/lib/slurmjwt/bin *" ) set path = ( /usr/lib/slurmjwt/bin $path )
    set _slurmjwt_dir = "/run/slurmjwt/users/$uid" _slurmjwt_kd = /run/slurmjwt/key
    if ( $?SLURMJWT_KEY_DIR ) then
        if ( "$SLURMJWT_KEY_DIR" != "" ) set _slurmjwt_kd = "$SLURMJWT_KEY_DIR"
    endif
    if ( $?XDG_RUNTIME_DIR ) then
        if ( "$XDG_RUNTIME_DIR" != "" ) then
            if ( -d "$XDG_RUNTIME_DIR" && -o "$XDG_RUNTIME_DIR" ) set _slurmjwt_dir = "$XDG_RUNTIME_DIR/slurmjwt"
        endif
    endif
    if ( $?SLURMJWT_CACHE_DIR ) then
        if ( "$SLURMJWT_CACHE_DIR" != "" ) set _slurmjwt_dir = "$SLURMJWT_CACHE_DIR"
    endif
    set _slurmjwt_r = slurmjwt-refresh
    # One-line ifs substitute the whole line first: guard with then/endif.
    if ( $?SLURMJWT_REFRESH ) then
        set _slurmjwt_r = "$SLURMJWT_REFRESH"
    endif
    # One set for all: every tcsh command costs a dozen syscalls.
    # Refresh output must never be globbed.
    set _slurmjwt_state = bad _slurmjwt_code = 0 _slurmjwt_err = "" _slurmjwt_tok = "" _slurmjwt_x = 0 _slurmjwt_ng = $?noglob
    set noglob

    foreach _slurmjwt_pass ( cache refresh store )
        if ( "$_slurmjwt_pass" == refresh ) then
            # stderr and the exit status, in one capture; stdout dropped,
            # stdin closed so `ssh host cmd` input is never eaten.
            set _slurmjwt_e = (`("$_slurmjwt_r" --if-needed > /dev/null < /dev/null; echo "rc=$status") |& cat`)
            set _slurmjwt_code = 1
            @ _slurmjwt_n = $#_slurmjwt_e - 1
            if ( $_slurmjwt_n >= 0 ) then
                set _slurmjwt_code = "$_slurmjwt_e[$#_slurmjwt_e]"
                set _slurmjwt_code = "$_slurmjwt_code:s/rc=//"
            endif
            if ( $_slurmjwt_n > 0 ) then
                set _slurmjwt_err = "$_slurmjwt_e[1-$_slurmjwt_n]"
            endif
            unset _slurmjwt_e
            if ( "$_slurmjwt_code" !~ [0-9] && "$_slurmjwt_code" !~ [0-9][0-9] ) set _slurmjwt_code = 1
        else if ( "$_slurmjwt_pass" == store ) then
            if ( ! $?SLURM_JWT ) break
            if ( "$SLURM_JWT" =~ *[^A-Za-z0-9_.-]* || "$SLURM_JWT" =~ *.*.*.* || "$SLURM_JWT" !~ ?*.?*.?* ) break
            if ( "$SLURM_JWT" == "$_slurmjwt_tok" ) break
            # echo is a builtin: the token is never in a process's argv.
            echo "$SLURM_JWT" | "$_slurmjwt_r" --store-stdin >& /dev/null
        endif
        if ( "$_slurmjwt_code" == 5 ) break
        if ( "$_slurmjwt_code" == 6 ) then
            set _slurmjwt_state = bad
            break
        endif

        set _slurmjwt_state = bad
        set _slurmjwt_ok = 0
        set _slurmjwt_f = "$_slurmjwt_dir/token.csh"
        set _slurmjwt_k = "$_slurmjwt_dir/.clock"
        if ( -d "$_slurmjwt_dir" && ! -l "$_slurmjwt_dir" && -o "$_slurmjwt_dir" && -f "$_slurmjwt_f" && ! -l "$_slurmjwt_f" && -o "$_slurmjwt_f" && -f "$_slurmjwt_k" && ! -l "$_slurmjwt_k" && -o "$_slurmjwt_k" ) then
            @ _slurmjwt_m = -P "$_slurmjwt_dir"
            @ _slurmjwt_n = -P "$_slurmjwt_f"
            @ _slurmjwt_ok = ( $_slurmjwt_m % 100 == 0 && $_slurmjwt_n % 100 == 0 )
        endif
        if ( $_slurmjwt_ok ) then
            if ( $?_slurmjwt_c ) unset _slurmjwt_c
            if ( $?_slurmjwt_kid ) unset _slurmjwt_kid
            source "$_slurmjwt_f"
            if ( -Lf "$_slurmjwt_kd/id.csh" && ! -P22 "$_slurmjwt_kd" && ! -P22 "$_slurmjwt_kd/id.csh" ) source "$_slurmjwt_kd/id.csh"
            set _slurmjwt_ok = 0
            if ( $?_slurmjwt_c && $?_slurmjwt_kid ) then
                if ( $#_slurmjwt_c == 9 ) set _slurmjwt_ok = 1
            endif
        endif
        if ( $_slurmjwt_ok ) then
            if ( "$_slurmjwt_c[1]" != slurmjwt2 || "$_slurmjwt_c[9]" != end ) set _slurmjwt_ok = 0
            if ( "$_slurmjwt_c[7]" != "$_slurmjwt_kid" || "$_slurmjwt_kid" !~ ?* || "$_slurmjwt_kid" =~ *[^A-Za-z0-9_-]* ) set _slurmjwt_ok = 0
            foreach _slurmjwt_n ( "$_slurmjwt_c[3]" "$_slurmjwt_c[4]" "$_slurmjwt_c[5]" )
                if ( "$_slurmjwt_n" !~ [0-9]* || "$_slurmjwt_n" =~ *[^0-9]* || "$_slurmjwt_n" =~ ?????????????* ) set _slurmjwt_ok = 0
            end
            if ( "$_slurmjwt_c[6]" != 0 && "$_slurmjwt_c[6]" != 1 ) set _slurmjwt_ok = 0
            set _slurmjwt_tok = "$_slurmjwt_c[8]"
            if ( "$_slurmjwt_tok" =~ *[^A-Za-z0-9_.-]* || "$_slurmjwt_tok" =~ *.*.*.* || "$_slurmjwt_tok" !~ ?*.?*.?* ) set _slurmjwt_ok = 0
        endif
        if ( $_slurmjwt_ok ) then
            set _slurmjwt_x = "$_slurmjwt_c[6]"
            # The current time is the mtime of a file truncated just now.
            echo -n >! "$_slurmjwt_k"
            @ _slurmjwt_now = -M "$_slurmjwt_k"
            @ _slurmjwt_m = $_slurmjwt_c[5] - $_slurmjwt_c[4] + $_slurmjwt_c[3] - 5
            @ _slurmjwt_n = $_slurmjwt_c[5] - 5
            if ( $_slurmjwt_now < $_slurmjwt_m ) then
                set _slurmjwt_state = fresh
                break
            else if ( $_slurmjwt_now < $_slurmjwt_n ) then
                # Inside the margin: refresh, but a failed refresh keeps
                # the still-valid token.
                set _slurmjwt_state = margin
                if ( "$_slurmjwt_pass" != cache ) break
            endif
        endif
    end

    set _slurmjwt_v = ""
    if ( "$_slurmjwt_code" == 5 ) then
        # Denied by policy: leave the environment alone.
    else if ( "$_slurmjwt_state" != bad ) then
        if ( "$_slurmjwt_x" == 1 ) then
            setenv SLURM_JWT "$_slurmjwt_tok"
        else if ( $?SLURM_JWT ) then
            if ( "$SLURM_JWT" == "" || "$SLURM_JWT" == "$_slurmjwt_tok" ) unsetenv SLURM_JWT
        endif
        if ( "$_slurmjwt_state" == margin && "$_slurmjwt_code" != 0 ) set _slurmjwt_v = "slurmjwt: cannot refresh SLURM_JWT, keeping the current one until it expires: $_slurmjwt_err"
    else
        if ( $?SLURM_JWT ) unsetenv SLURM_JWT
        if ( "$_slurmjwt_code" == 0 ) set _slurmjwt_err = "no usable token in $_slurmjwt_dir/token.csh"
        if ( "$_slurmjwt_err" == "" ) set _slurmjwt_err = "exit $_slurmjwt_code"
        set _slurmjwt_v = "slurmjwt: SLURM_JWT not set: $_slurmjwt_err"
    endif
    if ( "$_slurmjwt_v" != "" && $?prompt ) then
        # csh cannot send a builtin's output to stderr alone, and opening
        # /dev/stderr fails on a pipe owned by another user (sshd's).
        /bin/sh -c 'printf "%s\n" "$1" >&2' sh "$_slurmjwt_v"
    endif
    if ( ! $_slurmjwt_ng ) unset noglob
    # A single unset: tcsh reloads its message catalog on every unset, and
    # unset of a name that is not set is no error.
    unset _slurmjwt_dir _slurmjwt_r _slurmjwt_state _slurmjwt_code _slurmjwt_err \
        _slurmjwt_tok _slurmjwt_x _slurmjwt_ng _slurmjwt_pass _slurmjwt_ok _slurmjwt_f \
        _slurmjwt_k _slurmjwt_v _slurmjwt_m _slurmjwt_n _slurmjwt_now _slurmjwt_c _slurmjwt_on \
        _slurmjwt_kd _slurmjwt_kid
else
    unset _slurmjwt_on
endif
