"""Federation: membership, epochs, DKG and signing sessions over the network, persistence."""
