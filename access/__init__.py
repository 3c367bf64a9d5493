"""Access records: who touched each dataset, from where, what already happened where the
policy forbids it (observed-flow drift), and anomalies against each actor's own baseline."""
