"""The Zoho side: data centers, OAuth, the shared access token, the records API client."""
