"""Outbound to Zoho: the durable push queue, its worker, the change poller, the events API."""
