"""status-tracker: records check and deploy results; decides green/red commits and what each
wave runs (README.md, Architecture; docs/security.md for which reports count)."""
