-- Append several messages to a queue stream in one round trip (and one fsync).
-- KEYS[1] the stream; ARGV the frames.
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[i])
end
return #ARGV
