"""Channel transports: Redis (durable, cross-host) and 0MQ (direct). Private: use abaco.channels."""
