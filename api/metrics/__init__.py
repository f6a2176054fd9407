"""tutorledger.api.metrics."""
