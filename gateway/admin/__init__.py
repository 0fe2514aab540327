"""The admin console's services: login policy, what each button does, what the page shows."""
