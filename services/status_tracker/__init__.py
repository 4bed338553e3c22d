"""status-tracker: records check and deploy results; decides green/red commits (DESIGN §1)."""
