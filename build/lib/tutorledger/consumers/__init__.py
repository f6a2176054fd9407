"""tutorledger.consumers."""
