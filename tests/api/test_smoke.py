def test_owner_and_agent_see_themselves(client, world):
    owner = world.owner()
    inbox_id = world.inbox(owner)
    agent = world.agent(owner, inbox_id, ["email:read"])
    me = client.get("/v1/users/me/", headers=owner.auth)
    assert me.status_code == 200 and me.json["user_id"] == owner.user_id
    me = client.get("/v1/users/me/", headers=agent.auth)
    assert me.status_code == 200 and me.json["inbox_id"] == inbox_id
    assert me.json["next_step"] == {"code": "read_inbox", "method": "GET", "path": "/v1/messages/",
                                    "message": "Read the inbox's messages."}
