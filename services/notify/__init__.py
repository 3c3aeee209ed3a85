"""notify: templates, the in-app inbox and the delivery log."""
