// Which partitions a feature worker holds, and how that changes while it runs: the worker side of
// `PartitionLeases` (FeatureStore). Runs on the worker thread, once at start and with every
// heartbeat (each second):
//   1. renew the leases held; partitions whose lease was lost are dropped with their unit in
//      progress (nothing of it can be committed any more: the fence refuses it);
//   2. lease mode: over the fair share → commit those partitions' units, wait for the commits,
//      give their leases back; under it → take free partitions (a dead worker's, once its leases
//      expired; a leaving worker's at once);
//      fixed mode (--shard): take the partitions of the shard that are free; the others are held
//      by another worker, which this one stands by for.
//   3. a taken partition resumes at its progress in Redis, with the featurizer's state loaded
//      from Redis and the broker's watermarks checked (retention gaps, offset resets).

import Logging
import Features
import FeatureStore
import Foundation
import Streaming

extension FeaturizeEngine {
    /// The partitions of the fixed share (`--shard k --shards K`).
    var fixedPartitions: [Int32] {
        (0..<Int32(partitionCount)).filter { Int($0) % options.shards == options.shard }
    }

    /// The leases behind the partitions held now.
    var heldLeases: [PartitionLease] {
        states.values.compactMap { st in st.leaseToken.map { PartitionLease(partition: st.partition, token: $0) } }
            .sorted { $0.partition < $1.partition }
    }

    /// One round of the lease protocol (see the file header). Returns false when the run must end
    /// (stopping while Redis is down, or an offset reset under `--on-offset-reset stop`).
    func rebalance() throws -> Bool {
        let held = heldLeases
        guard let renewal = try withRedis("lease renewal", {
            try store.renewLeases(topic: options.topic, worker: options.workerId, held: held, lease: options.leaseTime)
        }) else { return false }
        if !renewal.lost.isEmpty {
            try lose(renewal.lost, how: "not renewed within the lease time (this worker was paused, cut off or blocked)")
        }
        var candidates: [Int32]
        var most: Int
        switch options.assignment {
        case .fixed:
            candidates = fixedPartitions.filter { states[$0] == nil }
            most = candidates.count
        case .lease:
            let index = renewal.members.firstIndex(of: options.workerId) ?? 0
            let share = fairShare(partitions: partitionCount, members: max(1, renewal.members.count), index: index)
            if states.count > share {
                guard try release(Array(states.keys.sorted().suffix(states.count - share)), members: renewal.members.count) else { return false }
            }
            most = share - states.count
            // Start each worker's search at its own place, so joiners do not all race for partition 0.
            let free = (0..<Int32(partitionCount)).filter { states[$0] == nil }
            let offset = free.isEmpty ? 0 : (index * partitionCount / max(1, renewal.members.count)) % free.count
            candidates = Array(free[offset...] + free[..<offset])
        }
        guard most > 0, !candidates.isEmpty else { return true }
        guard let taken = try withRedis("lease acquisition", {
            try store.acquireLeases(topic: options.topic, worker: options.workerId, candidates: candidates, most: most, lease: options.leaseTime)
        }) else { return false }
        if options.assignment == .fixed {
            let busy = Set(candidates).subtracting(taken.map(\.partition)).subtracting(standbyReported)
            if !busy.isEmpty {
                standbyReported.formUnion(busy)
                let holders = (try? store.leaseHolders(topic: options.topic, partitions: busy.sorted())) ?? [:]
                logger.info(.init(stringLiteral: "partitions \(busy.sorted().map { p in "\(p) (held by \(holders[p]?.owner ?? "another worker"))" }.joined(separator: ", ")) "
                    + "of shard \(options.shard)/\(options.shards) are leased by another worker — is a second worker running with the same "
                    + "--shard? Standing by: this worker takes them over if that one stops renewing its leases"))
            }
            standbyReported.subtract(taken.map(\.partition))
        }
        guard !taken.isEmpty else { return true }
        return try adopt(taken)
    }

    /// Starts owning `leases`: progress and featurizer state from Redis (none in raw mode), the
    /// broker's watermarks checked, then the consumer reassigned.
    func adopt(_ leases: [PartitionLease]) throws -> Bool {
        var adopted: [PartitionState<F.Partition>] = []
        for lease in leases {
            var next: Int64 = 0
            if !options.raw {
                guard let n = try withRedis("reading progress", { try store.readProgress(topic: options.topic, partition: lease.partition) }) else { return false }
                next = n
            }
            let st = PartitionState(partition: lease.partition,
                                    shard: FeatureStoreLayout.shard(partition: lease.partition, shards: options.featureShards),
                                    next: next, batchSize: options.batchSize,
                                    unit: featurizer.makePartition(lease.partition, batchSize: options.batchSize),
                                    leaseToken: options.raw ? nil : lease.token)
            if !options.raw {
                guard try withRedis("loading partition state", { try featurizer.load(st.unit, topic: options.topic, partition: lease.partition, from: store) }) != nil else { return false }
            }
            adopted.append(st)
            states[lease.partition] = st
        }
        if !options.raw { summary.leasesAcquired += Int64(leases.count) }
        lastActivity = .now
        // Offset resets first (progress beyond the high watermark), then retention gaps (below the
        // low watermark). Only a watermark the broker reports decides; an unanswered query leaves
        // the partition to the check on its first delivered message (`resetSeenAt`).
        var resets: [OffsetResetFinding] = []
        for st in adopted {
            guard let w = queryWatermarks(st.partition, timeout: .seconds(5)) else {
                if stopping { return false }
                continue
            }
            if !options.raw && st.tracker.next > w.high {
                resets.append(OffsetResetFinding(topic: options.topic, partition: st.partition, progress: st.tracker.next, watermarks: w))
            } else {
                noteRetention(st, low: w.low)
            }
        }
        if !resets.isEmpty {
            guard try handleOffsetResets(resets) else { return false }
        }
        let tokens = options.raw ? "" : " with lease tokens " + adopted.map { "\($0.partition):\($0.leaseToken ?? -1)" }.joined(separator: " ")
        logger.info(.init(stringLiteral: "owns partitions \(adopted.map { String($0.partition) }.joined(separator: ",")) of \(options.topic)\(tokens) "
            + "(resuming at \(adopted.map { "\($0.partition)@\($0.tracker.next)" }.joined(separator: " ")))"
            + (options.raw ? " — RAW mode: consume and count only" : " → feature shards \(Set(adopted.map(\.shard)).sorted()); now holds \(summary.partitions.count)")))
        try reassign()
        return true
    }

    /// Leaves the topic's group at the end of a run: every lease given back, the heartbeat removed
    /// (one attempt: a worker stopping while Redis is down leaves them to expire).
    func leaveGroup() {
        guard !link.gaveUp else { return }
        let held = heldLeases
        _ = try? withRedisOnce {
            try store.releaseLeases(topic: options.topic, worker: options.workerId, held: held, leaveGroup: true)
            try store.removeWorker(options.workerId)
        }
        if !held.isEmpty { logger.info("released partitions \(held.map { String($0.partition) }.joined(separator: ",")) (stopping)") }
    }

    /// Stops owning partitions whose lease is gone. Their units in progress are dropped: the fence
    /// refuses them, and the new owner reads those offsets again from the stored progress.
    func lose(_ partitions: [Int32], how: String) throws {
        let gone = partitions.filter { states[$0] != nil }
        guard !gone.isEmpty else { return }
        for p in gone { states[p] = nil }
        summary.leasesLost += Int64(gone.count)
        metrics.leasesLost.increment(by: gone.count)
        logger.warning(.init(stringLiteral: "LEASE LOST on partitions \(gone.map(String.init).joined(separator: ",")) of \(options.topic): \(how). Another worker "
            + "continues them from the progress in Redis; nothing more of them is committed from here (fencing token)"))
        try reassign()
    }

    /// Gives partitions back to rebalance: their units are committed first, then the leases
    /// released (only those still holding our token are deleted).
    func release(_ partitions: [Int32], members: Int) throws -> Bool {
        for p in partitions { if let st = states[p] { try commit(st) } }
        guard try committer.drain() else { return false }
        try collectCommits()
        let leases = heldLeases.filter { partitions.contains($0.partition) }
        guard try withRedis("lease release", {
            try store.releaseLeases(topic: options.topic, worker: options.workerId, held: leases, leaveGroup: false)
        }) != nil else { return false }
        for l in leases { states[l.partition] = nil }
        summary.leasesReleased += Int64(leases.count)
        logger.info(.init(stringLiteral: "released partitions \(leases.map { String($0.partition) }.joined(separator: ",")) to rebalance "
            + "(\(members) live workers; now holds \(summary.partitions.count))"))
        try reassign()
        return true
    }

    /// Points the consumer at the partitions held now. Partitions kept through the change resume
    /// at their position (librdkafka discards what it fetched before the new assignment).
    func reassign() throws {
        guard consumer != nil else { return }
        try assignAll()
    }
}
