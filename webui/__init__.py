"""The admin web UI (issue 6): not built yet. The sign-up link that waitlist approval mails
(`/signup/?email=…&signup_token=…`) is served here once it exists; until then the API's
`GET /v1/waitlist/validate/` and `POST /auth/signup/` complete a sign-up."""
