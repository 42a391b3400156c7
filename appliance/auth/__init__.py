"""Authentication state shared by the web UI, the API and the CLI: sessions, API tokens, login
throttling and the TOTP second factor. Users and their password hashes are in appliance.users."""
