"""Escalation: triggers, queues, supervisor modes and handoff to humans."""
