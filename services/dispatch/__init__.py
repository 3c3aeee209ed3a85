"""dispatch: teams, volunteers, routing rules and assignments."""
