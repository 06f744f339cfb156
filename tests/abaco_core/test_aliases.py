"""Abaco's alias scenarios: aliases, their permissions, other users, alias nonces, dots.

A sequence, as in Abaco; descriptions go as forms, as Abaco's tests send them. Permission
refusals are 403 (issue 9; Abaco answered 400) with Abaco's messages.
"""

from __future__ import annotations

import pytest

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    basic_response_checks,
    check_actor_is_ready,
    check_nonce_fields,
    get_actor_id,
    refused,
    register,
)
from tests.abaco_core.conftest import ADMIN, PRIVILEGED

ALIAS_1 = "jane"
ALIAS_2 = "doe"
#: Dots are allowed in aliases.
ALIAS_3 = "dots.in.my.name.alias"


async def test_register_actor(api):
    """Setup as Abaco's test_register_actor (ported in test_actors): abaco_test_suite."""
    await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)


async def test_register_alias_actor(api):
    """Ports test_register_alias_actor."""
    actor = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite_alias")
    assert actor["owner"] == ADMIN


async def test_alias_actor_is_ready(api):
    """Ports test_alias_actor_is_ready."""
    await check_actor_is_ready(api.admin, await get_actor_id(api.admin, "abaco_test_suite_alias"))


@pytest.mark.parametrize("alias", [ALIAS_1, ALIAS_2])
async def test_add_alias(api, alias):
    """Ports test_add_alias and test_add_second_alias: two aliases of one actor."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_alias")
    answer = await api.admin.post("/actors/aliases", data={"alias": alias, "actor_id": actor_id})
    result = basic_response_checks(answer)
    assert result["alias"] == alias
    assert result["actor_id"] == actor_id


async def test_cant_add_same_alias(api):
    """Ports test_cant_add_same_alias: 400 with Abaco's message."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_alias")
    answer = await api.admin.post("/actors/aliases", data={"alias": ALIAS_1, "actor_id": actor_id})
    assert refused(answer, 400)["message"] == f"Alias {ALIAS_1} already exists."


async def test_list_aliases(api):
    """Ports test_list_aliases."""
    aliases = basic_response_checks(await api.admin.get("/actors/aliases"))
    assert {a["alias"] for a in aliases} == {ALIAS_1, ALIAS_2}
    for alias in aliases:
        assert "actor_id" in alias


async def test_list_alias(api):
    """Ports test_list_alias."""
    result = basic_response_checks(await api.admin.get(f"/actors/aliases/{ALIAS_1}"))
    assert result["actor_id"] == await get_actor_id(api.admin, "abaco_test_suite_alias")
    assert result["alias"] == ALIAS_1


async def test_list_alias_permission(api):
    """Ports test_list_alias_permission: the alias's owner has UPDATE on it."""
    owner = basic_response_checks(await api.admin.get(f"/actors/aliases/{ALIAS_1}"))["owner"]
    levels = basic_response_checks(await api.admin.get(f"/actors/aliases/{ALIAS_1}/permissions"))
    assert levels[owner] == "UPDATE"


async def test_update_alias(api):
    """Ports test_update_alias: point the alias at another actor and back."""
    for name in ("abaco_test_suite", "abaco_test_suite_alias"):
        actor_id = await get_actor_id(api.admin, name)
        answer = await api.admin.put(f"/actors/aliases/{ALIAS_1}", data={"actor_id": actor_id})
        assert basic_response_checks(answer)["actor_id"] == actor_id


async def test_other_user_cant_list_alias(api):
    """Ports test_other_user_cant_list_alias."""
    answer = await api.privileged.get(f"/actors/aliases/{ALIAS_1}")
    refused(answer, 403, "you do not have access to this alias")


async def test_add_alias_permission(api):
    """Ports test_add_alias_permission."""
    grant = {"user": PRIVILEGED, "level": "UPDATE"}
    answer = await api.admin.post(f"/actors/aliases/{ALIAS_1}/permissions", data=grant)
    assert basic_response_checks(answer)[PRIVILEGED] == "UPDATE"


async def test_other_user_can_now_list_alias(api):
    """Ports test_other_user_can_now_list_alias."""
    answer = await api.privileged.get(f"/actors/aliases/{ALIAS_1}")
    assert "alias" in basic_response_checks(answer)


async def test_other_user_still_cant_list_actor(api):
    """Ports test_other_user_still_cant_list_actor: alias permissions give nothing on the
    actor."""
    answer = await api.privileged.get(f"/actors/{ALIAS_1}")
    refused(answer, 403, "you do not have access to this actor")


async def test_other_user_still_cant_update_alias_wo_actor(api):
    """Ports test_other_user_still_cant_update_alias_wo_actor."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_alias")
    answer = await api.privileged.put(f"/actors/aliases/{ALIAS_1}", data={"actor_id": actor_id})
    refused(
        answer,
        403,
        "you do not have UPDATE access to the actor you want to associate with this alias",
    )


async def test_other_user_still_cant_create_alias_nonce(api):
    """Ports test_other_user_still_cant_create_alias_nonce: alias nonces need the level on
    the alias and on its actor."""
    answer = await api.privileged.get(f"/actors/aliases/{ALIAS_1}/nonces")
    refused(answer, 403, "you do not have access to this alias and actor")


async def test_add_alias_with_dots_in_name(api):
    """Ports test_add_alias_with_dots_in_name and test_list_alias_with_dots_in_name."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_alias")
    answer = await api.admin.post("/actors/aliases", data={"alias": ALIAS_3, "actor_id": actor_id})
    assert basic_response_checks(answer)["alias"] == ALIAS_3
    listed = basic_response_checks(await api.admin.get(f"/actors/aliases/{ALIAS_3}"))
    assert listed["actor_id"] == actor_id
    assert listed["alias"] == ALIAS_3


@pytest.mark.parametrize("alias", [ALIAS_1, ALIAS_3])
class TestThroughAlias:
    """The alias works wherever the actor id does: for ``jane`` and the dotted alias."""

    async def test_get_actor_with_alias(self, api, alias):
        """Ports test_get_actor_with_alias and test_get_actor_with_alias_with_dots_in_name."""
        actor = basic_response_checks(await api.admin.get(f"/actors/{alias}"))
        assert actor["id"] == await get_actor_id(api.admin, "abaco_test_suite_alias")

    @pytest.mark.parametrize("path", ["messages", "executions"])
    async def test_get_actor_collection_with_alias(self, api, alias, path):
        """Ports test_get_actor_messages_with_alias, test_get_actor_executions_with_alias,
        test_get_actor_messages_with_alias_with_dots_in_name and
        test_get_actor_executions_with_alias_with_dots_in_name."""
        actor_id = await get_actor_id(api.admin, "abaco_test_suite_alias")
        result = basic_response_checks(await api.admin.get(f"/actors/{alias}/{path}"))
        assert actor_id in result["_links"]["self"]
        assert path in result

    async def test_create_unlimited_alias_nonce(self, api, alias):
        """Ports test_create_unlimited_alias_nonce and
        test_create_unlimited_alias_nonce_with_dots_in_name: no body means EXECUTE,
        unlimited."""
        nonce = basic_response_checks(await api.admin.post(f"/actors/aliases/{alias}/nonces"))
        check_nonce_fields(
            nonce, alias=alias, level="EXECUTE", max_uses=-1, current_uses=0, remaining_uses=-1
        )

    async def test_redeem_unlimited_alias_nonce(self, api, alias):
        """Ports test_redeem_unlimited_alias_nonce and
        test_redeem_unlimited_alias_nonce_with_dots_in_name: the nonce alone (no token)
        reads the actor through the alias."""
        nonces = basic_response_checks(await api.admin.get(f"/actors/aliases/{alias}/nonces"))
        nonce_id = nonces[0]["id"]
        basic_response_checks(await api.admin.get(f"/actors/{alias}"))
        answer = await api.anonymous.get(f"/actors/{alias}", params={"x-nonce": nonce_id})
        actor = basic_response_checks(answer)
        assert actor["id"] == await get_actor_id(api.admin, "abaco_test_suite_alias")


async def test_owner_can_delete_alias(api):
    """Ports test_owner_can_delete_alias."""
    basic_response_checks(await api.admin.delete(f"/actors/aliases/{ALIAS_2}"))
    aliases = basic_response_checks(await api.admin.get("/actors/aliases"))
    assert ALIAS_2 not in {a["alias"] for a in aliases}


async def test_other_user_can_delete_shared_alias(api):
    """Ports test_other_user_can_delete_shared_alias: UPDATE on the alias is enough."""
    basic_response_checks(await api.privileged.delete(f"/actors/aliases/{ALIAS_1}"))
    aliases = basic_response_checks(await api.admin.get("/actors/aliases"))
    assert ALIAS_1 not in {a["alias"] for a in aliases}


async def test_owner_can_delete_alias_with_dots_in_name(api):
    """Ports test_owner_can_delete_alias_with_dots_in_name."""
    basic_response_checks(await api.admin.delete(f"/actors/aliases/{ALIAS_3}"))
    assert basic_response_checks(await api.admin.get("/actors/aliases")) == []
