"""Sites, rooms and sensors: what a site is made of. Every other domain refers to these."""
