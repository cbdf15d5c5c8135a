"""What a running worker is made of, below the stages: the Faust app and its
transport, the topics, the changelog writer, ordered acks, dead letters,
bundles, and the admin client that creates and checks topics."""
