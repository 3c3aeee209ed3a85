"""Code every Redvest service shares: settings, database, message fabric, web plumbing."""
