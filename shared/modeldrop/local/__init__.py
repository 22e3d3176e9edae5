"""Local stand-ins for Google Cloud: emulators for Firestore, Pub/Sub and Cloud Storage."""
