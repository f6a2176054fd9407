"""tutorledger.infra."""
