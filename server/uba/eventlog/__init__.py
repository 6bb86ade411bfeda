"""The partitioned event log on NATS JetStream (issue #22, docs/scaling.md).

A front end (`uba serve --event-log`) validates as in the embedded mode and
publishes each valid event to the stream instead of the local writer
(`publisher.NatsEventSink`, the domain's `EventSink` port). Workers (`uba
worker`) own partitions through leases in a JetStream key-value bucket
(`leases`) and feed what they consume to the same group-commit writer the
embedded mode uses (`worker`); what their user partitions add to the
population aggregates (peer windows) they exchange through a stream of
their own (`aggregates`). The layout both sides agree on is in `layout`.
nats-py is an optional dependency (the `eventlog` extra); nothing here is
imported unless an event log is configured.
"""
