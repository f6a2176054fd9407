"""tutorledger.bench."""
