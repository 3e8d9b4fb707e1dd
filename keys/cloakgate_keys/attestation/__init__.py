"""Attestation evidence: providers (produce evidence) and verifiers (pure, injected time)."""
