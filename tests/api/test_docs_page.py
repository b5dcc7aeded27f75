from api.framework import REGISTRY


def test_docs_page_lists_every_endpoint_with_its_auth(client):
    resp = client.get("/docs/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    page = resp.get_data(as_text=True)
    for spec in REGISTRY.values():
        assert f"<code>{spec.rule.replace('<', '&lt;').replace('>', '&gt;')}</code>" in page
    assert "scope: email:read" in page and "user auth" in page and "<script" not in page
