# slurmjwt.fish - SLURM_JWT from the per-user token cache in fish, and the
# Slurm command wrappers first on PATH; installed in fish's vendor_conf.d, so
# that login and interactive fish read it. The same policy as slurmjwt.sh
# (read the header of /usr/lib/slurmjwt/profile.d/slurmjwt.sh); the cache
# format is docs/internals.md's. Builtins only on the warm path (read,
# string, test, set); a missing, due or stale cache runs
# `slurmjwt-refresh --if-needed` once. In interactive fish a prompt hook
# looks again when the token is due or the helper's key changed. Messages go
# to stderr, in interactive shells only; nothing reaches stdout.
#
# Names: SLURM_JWT (exported or erased), PATH; SLURMJWT_DISABLE,
# SLURMJWT_CACHE_DIR, SLURMJWT_KEY_DIR, SLURMJWT_REFRESH (read). Functions
# __slurmjwt_read, __slurmjwt_sync and globals __slurmjwt_* in interactive
# shells only.

if status is-login; or status is-interactive
    and begin; not set -q SLURMJWT_DISABLE; or contains -- "$SLURMJWT_DISABLE" "" 0; end
    and not test -e /etc/slurm/slurmjwt.disable
    and not test -O /

    if test -d /usr/lib/slurmjwt/bin; and not contains -- /usr/lib/slurmjwt/bin $PATH
        set -gx PATH /usr/lib/slurmjwt/bin $PATH
    end

    # Sets __slurmjwt_state (fresh, margin or bad), __slurmjwt_tok,
    # __slurmjwt_x (export flag), __slurmjwt_rup, __slurmjwt_eup, __slurmjwt_up
    # and __slurmjwt_key (the helper's key id).
    function __slurmjwt_read
        set -g __slurmjwt_state bad
        set -l dir
        if set -q SLURMJWT_CACHE_DIR; and test -n "$SLURMJWT_CACHE_DIR"
            set dir $SLURMJWT_CACHE_DIR
        else if set -q XDG_RUNTIME_DIR; and test -d "$XDG_RUNTIME_DIR" -a -O "$XDG_RUNTIME_DIR"
            set dir $XDG_RUNTIME_DIR/slurmjwt
        else
            set -l uid
            while read -l key value rest
                if test "$key" = Uid:
                    set uid $value
                    break
                end
            end </proc/self/status
            set dir /run/slurmjwt/users/$uid
        end
        set -l keydir /run/slurmjwt/key
        if set -q SLURMJWT_KEY_DIR; and test -n "$SLURMJWT_KEY_DIR"
            set keydir $SLURMJWT_KEY_DIR
        end
        set -g __slurmjwt_key
        read -l key <$keydir/id 2>/dev/null; and set -g __slurmjwt_key $key
        read -l up rest </proc/uptime 2>/dev/null; or return
        set -g __slurmjwt_up (string split -f1 . -- $up)
        read -l boot </proc/sys/kernel/random/boot_id 2>/dev/null; or return
        test -d $dir -a ! -L $dir -a -O $dir -a -f $dir/token -a ! -L $dir/token -a -O $dir/token
        or return
        # read fails on a line without its newline, and a torn one has no `end`.
        read -l line <$dir/token 2>/dev/null; or return
        set -l f (string split -- ' ' $line)
        test (count $f) -eq 9 -a "$f[1]" = slurmjwt2 -a "$f[2]" = "$boot" -a "$f[9]" = end
        or return
        test -n "$__slurmjwt_key" -a "$f[7]" = "$__slurmjwt_key"; or return
        for n in $f[3] $f[4] $f[5]
            string match -qr '^[0-9]{1,12}$' -- $n; or return
        end
        string match -qr '^[01]$' -- $f[6]; or return
        string match -qr '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' -- $f[8]; or return
        set -g __slurmjwt_rup $f[3]
        set -g __slurmjwt_eup $f[4]
        set -g __slurmjwt_x $f[6]
        set -g __slurmjwt_tok $f[8]
        if test $__slurmjwt_up -lt $__slurmjwt_rup
            set -g __slurmjwt_state fresh
        else if test $__slurmjwt_up -lt $__slurmjwt_eup
            set -g __slurmjwt_state margin
        end
    end

    # Export the cache's token (refreshing it first when needed; when there
    # is still none, an inherited SLURM_JWT counts once slurmjwt-refresh
    # --store-stdin has taken it), or erase SLURM_JWT when there is no
    # usable one; says why once, interactively. Denied (exit 5): leave the
    # environment alone, look again in an hour; an unsafe cache (exit 6):
    # trust nothing in it.
    function __slurmjwt_sync
        __slurmjwt_read
        set -l err
        set -l up 0
        string match -qr '^[0-9]{1,12}$' -- "$__slurmjwt_up"; and set up $__slurmjwt_up
        if test $__slurmjwt_state != fresh
            set -l refresh slurmjwt-refresh
            set -q SLURMJWT_REFRESH; and set refresh $SLURMJWT_REFRESH
            set err (command $refresh --if-needed 2>&1 >/dev/null </dev/null)
            set -l code $status
            if test $code -eq 5
                set -g __slurmjwt_seen $__slurmjwt_key
                set -g __slurmjwt_next (math "$up + 3600")
                return
            end
            __slurmjwt_read
            if test $code -eq 6
                set -g __slurmjwt_state bad
            else if test $__slurmjwt_state = bad
                and string match -qr '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' -- "$SLURM_JWT"
                and test "$SLURM_JWT" != "$__slurmjwt_tok"
                # The token travels on stdin (printf is a builtin), never in argv.
                printf '%s\n' $SLURM_JWT | command $refresh --store-stdin >/dev/null 2>&1
                __slurmjwt_read
            end
            test $code -ne 0; and test -z "$err"; and set err "exit $code"
        end
        set -g __slurmjwt_seen $__slurmjwt_key
        set -l say
        if test $__slurmjwt_state != bad
            if test $__slurmjwt_x = 1
                set -gx SLURM_JWT $__slurmjwt_tok
            else if set -q SLURM_JWT; and contains -- "$SLURM_JWT" "" $__slurmjwt_tok
                set -e SLURM_JWT
            end
            set -g __slurmjwt_next $__slurmjwt_rup
            if test $__slurmjwt_state = margin
                set -g __slurmjwt_next (math "min($up + 60, $__slurmjwt_eup)")
                test -n "$err"; and set say "slurmjwt: cannot refresh SLURM_JWT, keeping the current one until it expires: $err"
            end
        else
            set -e SLURM_JWT
            set -g __slurmjwt_next (math "$up + 300")
            test -z "$err"; and set err "no usable token in the cache"
            set say "slurmjwt: SLURM_JWT not set: $err"
        end
        if test -n "$say"; and status is-interactive; and test "$say" != "$__slurmjwt_msg"
            printf '%s\n' $say >&2
        end
        set -g __slurmjwt_msg $say
    end

    __slurmjwt_sync
    if status is-interactive
        # One read of the uptime and one of the key id per prompt.
        function __slurmjwt_prompt --on-event fish_prompt
            read -l up rest </proc/uptime 2>/dev/null; or return
            set -l keydir /run/slurmjwt/key
            set -q SLURMJWT_KEY_DIR; and test -n "$SLURMJWT_KEY_DIR"; and set keydir $SLURMJWT_KEY_DIR
            set -l key
            read -l k <$keydir/id 2>/dev/null; and set key $k
            if test (string split -f1 . -- $up) -ge $__slurmjwt_next; or test "$key" != "$__slurmjwt_seen"
                __slurmjwt_sync
            end
        end
    else
        functions -e __slurmjwt_read __slurmjwt_sync
        set -e __slurmjwt_state __slurmjwt_tok __slurmjwt_x __slurmjwt_rup __slurmjwt_eup \
            __slurmjwt_up __slurmjwt_key __slurmjwt_seen __slurmjwt_next __slurmjwt_msg
    end
end
