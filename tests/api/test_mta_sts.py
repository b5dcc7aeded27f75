def test_policy_is_served_for_a_verified_domain_only(client, world):
    owner = world.owner()
    world.inbox(owner, "agent@policy.example.com")  # makes policy.example.com verified
    ok = client.get("/.well-known/mta-sts.txt", headers={"Host": "mta-sts.policy.example.com"})
    assert ok.status_code == 200
    assert ok.mimetype == "text/plain"
    assert ok.data.decode().split("\r\n") == ["version: STSv1", "mode: testing", "mx: mail.gentbox.test",
                                               "max_age: 604800", ""]
    unknown = client.get("/.well-known/mta-sts.txt", headers={"Host": "mta-sts.other.example.com"})
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "not_found"
    wrong_host = client.get("/.well-known/mta-sts.txt", headers={"Host": "policy.example.com"})
    assert wrong_host.status_code == 404
