"""What inbound and outbound share: the synced modules, record links and the loop guard."""
