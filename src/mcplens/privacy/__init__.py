"""What may be kept of a request: pseudonymous ids, argument shapes, masked URIs."""
