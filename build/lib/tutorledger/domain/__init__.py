"""tutorledger.domain."""
