"""tutorledger.infra.eventstore."""
