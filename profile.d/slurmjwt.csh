# slurmjwt.csh - SLURM_JWT from the per-user token cache in tcsh, and the
# Slurm command wrappers first on path. Fast path (not interactive, enabled,
# not root, fresh cache of the helper's key): builtins only, few lines (tcsh
# runs a file line by line, comments too). Anything else, and notes:
# /usr/lib/slurmjwt/profile.d/slurmjwt.csh. Now: the clock file's mtime.
set _slurmjwt_go = 1 _slurmjwt_fng = ""
if ( $?tcsh && ! $?prompt && ! $?SLURMJWT_DISABLE && ! -e /etc/slurm/slurmjwt.disable && ! -o / ) then
    if ( -d /usr/lib/slurmjwt/bin && " $path " !~ "* /usr/lib/slurmjwt/bin *" ) set path = ( /usr/lib/slurmjwt/bin $path )
    set _slurmjwt_d = /run/slurmjwt/users/$uid _slurmjwt_kd = /run/slurmjwt/key _slurmjwt_kid = ""
    if ( $?XDG_RUNTIME_DIR ) then
        if ( -do "$XDG_RUNTIME_DIR" ) set _slurmjwt_d = "$XDG_RUNTIME_DIR/slurmjwt"
    endif
    if ( $?SLURMJWT_CACHE_DIR ) then
        if ( "$SLURMJWT_CACHE_DIR" != "" ) set _slurmjwt_d = "$SLURMJWT_CACHE_DIR"
    endif
    if ( $?SLURMJWT_KEY_DIR ) then
        if ( "$SLURMJWT_KEY_DIR" != "" ) set _slurmjwt_kd = "$SLURMJWT_KEY_DIR"
    endif
    set _slurmjwt_f = "$_slurmjwt_d/token.csh" _slurmjwt_k = "$_slurmjwt_d/.clock" _slurmjwt_c = ()
    if ( -Ldo "$_slurmjwt_d" && -Lfo "$_slurmjwt_f" && -Lfo "$_slurmjwt_k" && ! -P77 "$_slurmjwt_d" && ! -P77 "$_slurmjwt_f" && -Lf "$_slurmjwt_kd/id.csh" && ! -P22 "$_slurmjwt_kd" && ! -P22 "$_slurmjwt_kd/id.csh" ) then
        if ( ! $?noglob ) set _slurmjwt_fng = noglob noglob
        source "$_slurmjwt_f"
        source "$_slurmjwt_kd/id.csh"
    endif
    if ( $#_slurmjwt_c == 9 ) then
        if ( "$_slurmjwt_c[1]" == slurmjwt2 && "$_slurmjwt_c[9]" == end && "$_slurmjwt_c[7]" == "$_slurmjwt_kid" && "$_slurmjwt_kid" =~ ?* && "$_slurmjwt_kid" !~ *[^A-Za-z0-9_-]* && "$_slurmjwt_c[3]$_slurmjwt_c[4]$_slurmjwt_c[5]" !~ *[^0-9]* && "$_slurmjwt_c[3]-$_slurmjwt_c[4]-$_slurmjwt_c[5]" =~ [1-9]*-[1-9]*-[1-9]* && "$_slurmjwt_c[3]-$_slurmjwt_c[4]-$_slurmjwt_c[5]" !~ *[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]* && "$_slurmjwt_c[6]" =~ [01] && "$_slurmjwt_c[8]" !~ *[^A-Za-z0-9_.-]* && "$_slurmjwt_c[8]" !~ *.*.*.* && "$_slurmjwt_c[8]" =~ ?*.?*.?* ) then
            echo -n >! "$_slurmjwt_k"
            @ _slurmjwt_k = -M "$_slurmjwt_k" - ( $_slurmjwt_c[5] - $_slurmjwt_c[4] + $_slurmjwt_c[3] - 5 )
            if ( $_slurmjwt_k < 0 ) then
                set _slurmjwt_go = 0
                if ( $_slurmjwt_c[6] == 1 ) then
                    setenv SLURM_JWT "$_slurmjwt_c[8]"
                else if ( $?SLURM_JWT ) then
                    if ( "$SLURM_JWT" == "" || "$SLURM_JWT" == "$_slurmjwt_c[8]" ) unsetenv SLURM_JWT
                endif
            endif
        endif
    endif
endif
if ( $_slurmjwt_go && -r "/usr/lib/slurmjwt/profile.d/slurmjwt.csh" ) source "/usr/lib/slurmjwt/profile.d/slurmjwt.csh"
# One unset (each reloads tcsh's message catalog), noglob too if set above.
unset _slurmjwt_go _slurmjwt_d _slurmjwt_f _slurmjwt_k _slurmjwt_c _slurmjwt_kd _slurmjwt_kid $_slurmjwt_fng _slurmjwt_fng
