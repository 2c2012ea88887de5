"""System checks: health of the stores the functions depend on, and the JWKS."""
