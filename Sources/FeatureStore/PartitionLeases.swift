// PartitionLeases: which feature worker owns which Kafka partition, decided in Redis.
//
// A worker owns a partition while it holds the partition's lease (sr:lease:{topic}:{p}: owner,
// fencing token, PEXPIRE = the lease time). It renews its leases with every heartbeat; a worker
// that stops renewing (killed, paused, cut off) loses them when they expire, and the others take
// the partitions over and continue from the progress stored in Redis. Every acquisition gets a
// new, larger token (INCR sr:lease:seq), and the commit script writes nothing unless the lease
// still holds the unit's token — so a worker that lost its lease can never commit again, even if
// it wakes up holding a full unit.
//
// Membership (sr:members:{topic}, a zset of live workers scored by expiry) lets every worker
// compute the same fair share: with P partitions and M live workers sorted by id, the worker at
// index i should hold P/M partitions, one more if i < P mod M (`fairShare`). Over its share it
// releases partitions (after committing them); under it, it acquires free ones. Expiry uses
// Redis's clock (TIME inside the scripts), so worker clocks never have to agree.

import Foundation
import Streaming

/// A lease this worker holds: the partition and the fencing token it was granted.
public struct PartitionLease: Sendable, Equatable {
    public var partition: Int32
    public var token: Int64
    public init(partition: Int32, token: Int64) { self.partition = partition; self.token = token }
}

/// What a heartbeat learnt: the live members of the topic's group (sorted) and the leases it no
/// longer holds (expired, or taken by another worker).
public struct LeaseRenewal: Sendable, Equatable {
    public var members: [String]
    public var lost: [Int32]
}

/// Who holds a partition's lease, as `status` reports it.
public struct LeaseHolder: Sendable, Equatable, Codable {
    public var owner: String
    public var token: Int64
    /// Milliseconds until the lease expires unless renewed.
    public var remainingMs: Int64
}

/// How many partitions the worker at `index` of `members` (live workers sorted by id) should
/// hold: an even share, the first `partitions mod members` workers one more.
public func fairShare(partitions: Int, members: Int, index: Int) -> Int {
    guard members > 0, index >= 0, index < members else { return 0 }
    return partitions / members + (index < partitions % members ? 1 : 0)
}

extension FeatureStore {
    // KEYS: 1 members zset, 2… held leases. ARGV: 1 worker, 2 lease ms, 3… their tokens.
    // Returns {sorted live members, 1-based indexes of the held leases that were lost}.
    static let renewScript = LuaScript("""
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local ttl = tonumber(ARGV[2])
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    local lost = {}
    for i = 2, #KEYS do
      if redis.call('HGET', KEYS[i], 'token') == ARGV[i + 1] then redis.call('PEXPIRE', KEYS[i], ttl)
      else lost[#lost + 1] = i - 1 end
    end
    return {redis.call('ZRANGE', KEYS[1], 0, -1), lost}
    """)

    // KEYS: 1 token sequence, 2… candidate leases. ARGV: 1 worker, 2 lease ms, 3 most to take.
    // A lease is free when absent (expired, released) or held under this worker's own id (a
    // restart with a stable --worker-id takes its partitions back at once, with a new token).
    // Returns {index, token, index, token, …} of the leases taken (1-based candidate indexes).
    static let acquireScript = LuaScript("""
    local got = {}
    local most = tonumber(ARGV[3])
    for i = 2, #KEYS do
      if #got >= 2 * most then break end
      local owner = redis.call('HGET', KEYS[i], 'owner')
      if not owner or owner == ARGV[1] then
        local token = redis.call('INCR', KEYS[1])
        redis.call('HSET', KEYS[i], 'owner', ARGV[1], 'token', token)
        redis.call('PEXPIRE', KEYS[i], ARGV[2])
        got[#got + 1] = i - 1
        got[#got + 1] = token
      end
    end
    return got
    """)

    // KEYS: 1 members zset, 2… leases. ARGV: 1 worker, 2 leave the group (1/0), 3… tokens.
    // Deletes each lease that still holds its token; returns how many.
    static let releaseScript = LuaScript("""
    local n = 0
    for i = 2, #KEYS do
      if redis.call('HGET', KEYS[i], 'token') == ARGV[i + 1] then redis.call('DEL', KEYS[i]); n = n + 1 end
    end
    if ARGV[2] == '1' then redis.call('ZREM', KEYS[1], ARGV[1]) end
    return n
    """)

    /// The heartbeat of the lease protocol: keeps `worker` in the topic's group for `lease`, renews
    /// every lease in `held` that still has its token, and reports the group and the lost leases.
    public func renewLeases(topic: String, worker: String, held: [PartitionLease], lease: Duration) throws -> LeaseRenewal {
        let keys = [layout.members(topic: topic)] + held.map { layout.lease(topic: topic, partition: $0.partition) }
        let args = [worker, "\(lease.milliseconds)"] + held.map { "\($0.token)" }
        let reply = try Self.renewScript.run(redis, keys: keys.map(s), args: args.map(s))
        guard let e = reply.elements, e.count == 2, let members = e[0].elements, let lost = e[1].elements else {
            throw FeatureStoreError.unexpectedReply("lease renewal script returned \(reply)")
        }
        return LeaseRenewal(members: members.compactMap(\.text).sorted(),
                            lost: lost.compactMap { $0.integer.map { held[Int($0) - 1].partition } })
    }

    /// Takes up to `most` of `candidates` whose lease is free, in the order given.
    public func acquireLeases(topic: String, worker: String, candidates: [Int32], most: Int, lease: Duration) throws -> [PartitionLease] {
        guard most > 0, !candidates.isEmpty else { return [] }
        let keys = [layout.leaseSequence] + candidates.map { layout.lease(topic: topic, partition: $0) }
        let reply = try Self.acquireScript.run(redis, keys: keys.map(s), args: [worker, "\(lease.milliseconds)", "\(most)"].map(s))
        guard let e = reply.elements, e.count % 2 == 0 else {
            throw FeatureStoreError.unexpectedReply("lease acquisition script returned \(reply)")
        }
        return stride(from: 0, to: e.count, by: 2).compactMap { k in
            guard let i = e[k].integer, let token = e[k + 1].integer, i >= 1, Int(i) <= candidates.count else { return nil }
            return PartitionLease(partition: candidates[Int(i) - 1], token: token)
        }
    }

    /// Gives back the leases in `held` that still carry their tokens; with `leaveGroup`, also
    /// leaves the topic's group (clean shutdown: the others take over at their next heartbeat).
    @discardableResult
    public func releaseLeases(topic: String, worker: String, held: [PartitionLease], leaveGroup: Bool) throws -> Int {
        let keys = [layout.members(topic: topic)] + held.map { layout.lease(topic: topic, partition: $0.partition) }
        let args = [worker, leaveGroup ? "1" : "0"] + held.map { "\($0.token)" }
        return Int(try Self.releaseScript.run(redis, keys: keys.map(s), args: args.map(s)).integer ?? 0)
    }

    /// The current holder of each partition's lease (partitions without one are absent).
    public func leaseHolders(topic: String, partitions: [Int32]) throws -> [Int32: LeaseHolder] {
        guard !partitions.isEmpty else { return [:] }
        let replies = try redis.pipeline(partitions.flatMap { p -> [[String]] in
            let key = layout.lease(topic: topic, partition: p)
            return [["HMGET", key, "owner", "token"], ["PTTL", key]]
        })
        var out: [Int32: LeaseHolder] = [:]
        for (k, p) in partitions.enumerated() {
            guard let f = replies[2 * k].elements, f.count == 2, let owner = f[0].text, let token = f[1].integer else { continue }
            out[p] = LeaseHolder(owner: owner, token: token, remainingMs: replies[2 * k + 1].integer ?? -1)
        }
        return out
    }
}

