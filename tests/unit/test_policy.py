"""Who gets a token: group policy by gid, and a name service that fails
(answers `internal`, never `no-user` or another identity). The policy's
rules for root, SlurmUser and DenyUsers on the real passwd file are in
test_helper.py."""

from __future__ import annotations

import pytest

from pam_slurmjwt.config import parse_config
from pam_slurmjwt.errors import Refused
from pam_slurmjwt.policy import ASK_AGAIN, Policy
from tests.unit.fakenss import FakeDirectory


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy(text: str = "", directory: FakeDirectory | None = None,
            clock: Clock | None = None) -> Policy:
    return Policy(parse_config(text, "/c"), "slurm", directory or FakeDirectory(),
                  clock or Clock())


def _refusal(policy: Policy, caller: int, name: str) -> tuple[str, str]:
    with pytest.raises(Refused) as err:
        policy.resolve(caller, name)
    return err.value.code, str(err.value)


GROUP_POLICY = "AllowGroups=hpc\nDenyGroups=contractors"


def test_allow_groups_admits_members_by_supplementary_group() -> None:
    assert _policy(GROUP_POLICY).resolve(0, "demo").pw_uid == 2000


def test_deny_groups_wins_over_allow_groups() -> None:
    assert _refusal(_policy(GROUP_POLICY), 0, "eve") == (
        "denied", "eve is in DenyGroups (contractors)")


def test_a_primary_group_counts_like_a_supplementary_one() -> None:
    # grace's primary gid is contractors' (3001); she is listed in no memberUid.
    assert _refusal(_policy(GROUP_POLICY), 0, "grace") == (
        "denied", "grace is in DenyGroups (contractors)")


def test_users_in_none_of_allow_groups_are_denied() -> None:
    assert _refusal(_policy(GROUP_POLICY), 0, "frank") == (
        "denied", "frank is in none of AllowGroups (hpc)")


def test_groups_are_compared_by_gid_not_by_name() -> None:
    # extern is a second name of gid 3001: eve (member of contractors) is denied.
    assert _refusal(_policy("DenyGroups=extern"), 0, "eve") == (
        "denied", "eve is in DenyGroups (extern)")


def test_allow_groups_naming_no_existing_group_admits_nobody() -> None:
    assert _refusal(_policy("AllowGroups=hcp"), 0, "demo") == (
        "denied", "demo is in none of AllowGroups (hcp)")


def test_a_user_asking_for_themselves_is_checked_the_same_way() -> None:
    assert _refusal(_policy(GROUP_POLICY), 2001, "-")[0] == "denied"
    assert _policy(GROUP_POLICY).resolve(2000, "-").pw_name == "demo"


def test_group_policy_applies_to_allow_privileged_names_too() -> None:
    policy = _policy(f"{GROUP_POLICY}\nAllowPrivileged=root")
    assert _refusal(policy, 0, "root") == ("denied", "root is in none of AllowGroups (hpc)")


def test_without_group_policy_no_group_is_looked_up() -> None:
    directory = FakeDirectory()
    assert _policy("", directory).resolve(0, "eve").pw_uid == 2001
    assert directory.asked == ["user 'slurm'", "user 'nobody'", "user 'eve'"]


@pytest.mark.parametrize(("caller", "name", "what"), [
    (0, "demo", "user 'demo'"),  # root (the PAM module) asking for someone
    (2000, "-", "uid 2000"),     # a user asking for themselves
])
def test_a_name_service_that_is_down_means_internal_never_no_user(
        caller: int, name: str, what: str) -> None:
    directory = FakeDirectory()
    policy = _policy("", directory)
    policy.names()  # SlurmUser and DenyUsers resolved while it answered
    directory.down = True
    assert _refusal(policy, caller, name) == (
        "internal", f"cannot look up {what}: Connection refused; the name service (sssd?) "
                    f"did not answer, try again")


def test_a_failed_groups_lookup_is_internal_not_a_pass() -> None:
    directory = FakeDirectory()
    policy = _policy(GROUP_POLICY, directory)
    policy.names()  # the configured names resolved while the service answered
    directory.groups_down = True  # initgroups now silently lists the primary group only
    assert _refusal(policy, 0, "eve") == (
        "internal", "cannot look up group 3000: Connection refused; the name service "
                    "(sssd?) did not answer, try again")


def test_a_group_initgroups_missed_is_found_in_its_member_list() -> None:
    directory = FakeDirectory()
    directory.initgroups_silent = True
    assert _refusal(_policy(GROUP_POLICY, directory), 0, "eve") == (
        "denied", "eve is in DenyGroups (contractors)")
    assert _policy(GROUP_POLICY, directory).resolve(0, "demo").pw_name == "demo"


def test_names_are_resolved_again_after_a_failure_and_then_kept() -> None:
    directory = FakeDirectory()
    policy = _policy(GROUP_POLICY, directory)
    directory.down = True
    assert _refusal(policy, 0, "demo")[0] == "internal"
    directory.down = False
    assert policy.resolve(0, "demo").pw_name == "demo"
    before = len(directory.asked)
    policy.resolve(0, "demo")
    # The configured names are kept: only the user, their groups and the one
    # configured group initgroups did not list (contractors) are asked.
    assert directory.asked[before:] == ["user 'demo'", "the groups of 'demo'", "group 3001"]


def test_unknown_users_are_still_no_user() -> None:
    assert _refusal(_policy(GROUP_POLICY), 0, "nosuch") == ("no-user", "no such user 'nosuch'")
    assert _refusal(_policy(GROUP_POLICY), 4711, "-")[0] == "internal"  # a uid with no entry


# -- a group the name service does not know (yet): created after the load,
# or hidden by sssd's negative cache; never "not a member"

LATE_GID = 3005
UNKNOWN_DENY = ("internal", "DenyGroups names 'latecomers', which the name service does not "
                            "know, so nobody gets a token until it does; try again (sssd hides "
                            "a new group until its negative cache expires), or fix the name in "
                            "/c")


def _create_latecomers(directory: FakeDirectory, *members: str) -> None:
    directory.groups["latecomers"] = LATE_GID
    for member in members:
        directory.supplementary.setdefault(member, set()).add(LATE_GID)


def test_a_deny_group_created_after_the_load_refuses_its_members_without_a_reload() -> None:
    directory, clock = FakeDirectory(), Clock()
    policy = _policy("DenyGroups=latecomers", directory, clock)
    assert _refusal(policy, 0, "frank") == UNKNOWN_DENY  # not "no such group: grant"
    _create_latecomers(directory, "frank")
    assert _refusal(policy, 0, "frank") == UNKNOWN_DENY  # not asked again yet: still no token
    clock.now += ASK_AGAIN
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in DenyGroups (latecomers)")
    assert policy.resolve(0, "demo").pw_name == "demo"  # not a member


def test_a_deny_group_found_only_in_its_member_list_counts_once_it_exists() -> None:
    # sssd's initgroups still lists frank's old groups; getgrgid reads the new one.
    directory, clock = FakeDirectory(), Clock()
    policy = _policy("DenyGroups=latecomers", directory, clock)
    assert _refusal(policy, 0, "frank") == UNKNOWN_DENY
    _create_latecomers(directory, "frank")
    directory.initgroups_silent = True
    clock.now += ASK_AGAIN
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in DenyGroups (latecomers)")


def test_a_deny_group_the_directory_never_knows_refuses_everyone_as_internal() -> None:
    # A typo or a group deleted from the directory: no token for anyone
    # (logged as an error, and doctor names it), never a token for its members.
    policy = _policy("AllowGroups=hpc\nDenyGroups=contractors,latecomers")
    assert _refusal(policy, 0, "demo") == UNKNOWN_DENY
    assert _refusal(policy, 2000, "-") == UNKNOWN_DENY
    # What the directory does know still answers first.
    assert _refusal(policy, 0, "eve") == ("denied", "eve is in DenyGroups (contractors)")
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in none of AllowGroups "
                                                      "(hpc)")


def test_an_allow_group_created_after_the_load_admits_its_members_without_a_reload() -> None:
    directory, clock = FakeDirectory(), Clock()
    policy = _policy("AllowGroups=hpc,latecomers", directory, clock)
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in none of AllowGroups "
                                                      "(hpc, latecomers)")
    _create_latecomers(directory, "frank")
    clock.now += ASK_AGAIN
    assert policy.resolve(0, "frank").pw_name == "frank"


def test_a_max_lifespan_group_created_after_the_load_gets_its_cap() -> None:
    directory, clock = FakeDirectory(), Clock()
    policy = _policy("MaxLifespanFor=@latecomers:7200", directory, clock)
    frank = policy.resolve(0, "frank")
    assert policy.cap(frank) == 3600
    _create_latecomers(directory, "frank")
    clock.now += ASK_AGAIN
    assert policy.cap(policy.resolve(0, "frank")) == 7200


def test_an_unknown_group_is_asked_again_at_most_once_per_interval() -> None:
    directory, clock = FakeDirectory(), Clock()
    policy = _policy("AllowGroups=hpc\nDenyGroups=contractors,latecomers", directory, clock)
    for _ in range(20):
        _refusal(policy, 0, "demo")
    asked = [what for what in directory.asked if what.startswith("group '")]
    assert asked == ["group 'hpc'", "group 'contractors'", "group 'latecomers'"]
    clock.now += ASK_AGAIN - 0.1
    _refusal(policy, 0, "demo")
    assert directory.asked.count("group 'latecomers'") == 1
    clock.now += 0.1
    for _ in range(20):
        _refusal(policy, 0, "demo")
    # The unknown name and the DenyGroups ones are asked again, once; the
    # AllowGroups name is kept.
    asked = [what for what in directory.asked if what.startswith("group '")]
    assert asked == ["group 'hpc'", "group 'contractors'", "group 'latecomers'",
                     "group 'contractors'", "group 'latecomers'"]


def test_a_failure_asking_again_is_internal_and_the_name_is_asked_again_later() -> None:
    directory, clock = FakeDirectory(), Clock()
    policy = _policy("DenyGroups=latecomers", directory, clock)
    assert _refusal(policy, 0, "frank") == UNKNOWN_DENY
    _create_latecomers(directory, "frank")
    directory.down = True
    clock.now += ASK_AGAIN
    assert _refusal(policy, 0, "frank") == (
        "internal", "cannot look up group 'latecomers': Connection refused; the name service "
                    "(sssd?) did not answer, try again")
    directory.down = False
    assert _refusal(policy, 0, "frank") == UNKNOWN_DENY  # its turn is taken: wait
    clock.now += ASK_AGAIN
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in DenyGroups (latecomers)")


# -- a DenyGroups group deleted, or made again under a new gid, within one
# load: the deny rule follows the directory, never becomes an allow

def _delete_latecomers(directory: FakeDirectory) -> None:
    gid = directory.groups.pop("latecomers")
    for gids in directory.supplementary.values():
        gids.discard(gid)


def test_a_deny_group_made_again_under_a_new_gid_is_denied_by_its_new_gid() -> None:
    directory, clock = FakeDirectory(), Clock()
    policy = _policy("DenyGroups=latecomers", directory, clock)
    _create_latecomers(directory, "frank")
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in DenyGroups (latecomers)")
    _delete_latecomers(directory)
    directory.groups["latecomers"] = LATE_GID + 1
    directory.supplementary["frank"].add(LATE_GID + 1)
    # Within ASK_AGAIN the old gid still stands; from the next answer on,
    # the new one: frank never gets a token for want of a reload.
    clock.now += ASK_AGAIN
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in DenyGroups (latecomers)")
    assert policy.resolve(0, "demo").pw_name == "demo"
    # The old gid, given to another group, denies nobody.
    directory.groups["newcomers"] = LATE_GID
    directory.supplementary["demo"].add(LATE_GID)
    assert policy.resolve(0, "demo").pw_name == "demo"


def test_a_deny_group_deleted_within_a_load_refuses_everyone_as_internal() -> None:
    # Deleted, or hidden by sssd's negative cache: its members cannot be
    # told from anyone else, as when it was unknown at the load.
    directory, clock = FakeDirectory(), Clock()
    policy = _policy("DenyGroups=latecomers", directory, clock)
    _create_latecomers(directory, "frank")
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in DenyGroups (latecomers)")
    _delete_latecomers(directory)
    clock.now += ASK_AGAIN
    assert _refusal(policy, 0, "frank") == UNKNOWN_DENY
    assert _refusal(policy, 0, "demo") == UNKNOWN_DENY
    _create_latecomers(directory, "frank")
    clock.now += ASK_AGAIN
    assert _refusal(policy, 0, "frank") == ("denied", "frank is in DenyGroups (latecomers)")
    assert policy.resolve(0, "demo").pw_name == "demo"
