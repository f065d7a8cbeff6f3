"""The application-service API refuses a homeserver that does not know the hs_token."""

from harness import http, scenario


@scenario
async def test_transaction_with_a_wrong_hs_token_is_forbidden(env):
    async with http().put(
        f"{env.as_url}/_matrix/app/v1/transactions/e2e-forged-1",
        json={"events": []},
        headers={"Authorization": "Bearer not-the-hs-token"},
    ) as resp:
        assert resp.status == 403
        assert (await resp.json())["errcode"] == "M_FORBIDDEN"
