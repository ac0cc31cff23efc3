// TransitionBatch: the unit that flows from behaviour feature workers to the RL trainers —
// B transitions (user, state, action, rewards, done, time), one per behaviour event, emitted
// once the rewards of its return window are known (see docs/ARCHITECTURE.md, "Behaviour events").

/// B transitions with history length H. `states` is row-major: transition b's state is
/// `states[b*H ..< (b+1)*H]`, the H items the user consumed before the action, oldest first,
/// padded in front with `paddingItem` when the user had fewer. The next state is that state
/// shifted by one with the action appended (`nextState(_:)`), so it is not stored. `rewards` is
/// B×W row-major: row b is the reward of the action, then of the user's next W−1 events in the
/// same session, 0 after the session ended — what a discounted return over W events needs.
public struct TransitionBatch: Sendable, Equatable {
    /// Item id 0 fills a state that has fewer than H items; real items start at `BehaviorIds.firstItemId`.
    public static let paddingItem: Int32 = 0

    public var historyLength: Int
    /// W: rewards per transition (`TransitionRule.rewardWindow`); 1 = the immediate reward only.
    public var rewardWindow: Int
    public var users: [Int32]
    public var states: [Int32]
    public var actions: [Int32]
    /// B×W, row-major (see above); `reward(_:)` is column 0.
    public var rewards: [Float]
    /// True when the user's next event came more than the session gap later, or was not known
    /// when the event-time watermark passed (see `BehaviorSettings.sessionGapSeconds`).
    public var done: [Bool]
    /// Event time of the action, Unix seconds.
    public var times: [Int64]

    public init(historyLength: Int, rewardWindow: Int = 1, users: [Int32] = [], states: [Int32] = [], actions: [Int32] = [],
                rewards: [Float] = [], done: [Bool] = [], times: [Int64] = []) {
        self.historyLength = historyLength; self.rewardWindow = rewardWindow
        self.users = users; self.states = states; self.actions = actions
        self.rewards = rewards; self.done = done; self.times = times
    }

    public var count: Int { actions.count }

    /// Transition b's state (H item ids, oldest first).
    public func state(_ b: Int) -> ArraySlice<Int32> { states[(b * historyLength)..<((b + 1) * historyLength)] }

    /// Transition b's next state: its state without the oldest item, then the action.
    public func nextState(_ b: Int) -> [Int32] { Array(state(b).dropFirst()) + [actions[b]] }

    /// Transition b's immediate reward (its action's).
    @inline(__always) public func reward(_ b: Int) -> Float { rewards[b * rewardWindow] }

    /// Transition b's rewards: the action's, then its W−1 successors' (0 after the session).
    public func rewardRow(_ b: Int) -> ArraySlice<Float> { rewards[(b * rewardWindow)..<((b + 1) * rewardWindow)] }

    /// Σ_k γ^k · rewards[b, k]: transition b's return, truncated at the window.
    public func discountedReturn(_ b: Int, gamma: Float) -> Float {
        var g: Float = 0, d: Float = 1
        for r in rewardRow(b) { g += d * r; d *= gamma }
        return g
    }

    /// Appends a transition with `rewards` (at most W: the rest of its row is 0).
    public mutating func append(user: Int32, state: some Collection<Int32>, action: Int32, rewards row: some Collection<Float>,
                                done: Bool, time: Int64) {
        precondition(state.count == historyLength, "a state holds exactly historyLength items")
        precondition(row.count <= rewardWindow, "a transition holds at most rewardWindow rewards")
        users.append(user); states.append(contentsOf: state); actions.append(action)
        rewards.append(contentsOf: row)
        for _ in row.count..<rewardWindow { rewards.append(0) }
        self.done.append(done); times.append(time)
    }

    /// Appends a transition whose only known reward is the action's (later ones 0).
    public mutating func append(user: Int32, state: some Collection<Int32>, action: Int32, reward: Float, done: Bool, time: Int64) {
        append(user: user, state: state, action: action, rewards: CollectionOfOne(reward), done: done, time: time)
    }

    /// The rule's form: the rewards of `pending` (its first is the action's), then `next`.
    mutating func append(user: Int32, state: some Collection<Int32>, action: Int32, pending: ArraySlice<UserState.Pending>,
                         next: Float?, done: Bool, time: Int64) {
        precondition(state.count == historyLength, "a state holds exactly historyLength items")
        precondition(pending.count + (next == nil ? 0 : 1) <= rewardWindow, "the rule's window matches the batch's")
        users.append(user); states.append(contentsOf: state); actions.append(action)
        for p in pending { rewards.append(p.reward) }
        if let next { rewards.append(next) }
        for _ in (pending.count + (next == nil ? 0 : 1))..<rewardWindow { rewards.append(0) }
        self.done.append(done); times.append(time)
    }

    /// Removes the first `n` transitions and returns them as a batch of the same shape.
    public mutating func removeFirst(_ n: Int) -> TransitionBatch {
        let H = historyLength, W = rewardWindow
        let head = TransitionBatch(historyLength: H, rewardWindow: W, users: Array(users[..<n]), states: Array(states[..<(n * H)]),
                                   actions: Array(actions[..<n]), rewards: Array(rewards[..<(n * W)]),
                                   done: Array(done[..<n]), times: Array(times[..<n]))
        users.removeFirst(n); states.removeFirst(n * H); actions.removeFirst(n)
        rewards.removeFirst(n * W); done.removeFirst(n); times.removeFirst(n)
        return head
    }

    public mutating func removeAll() {
        users.removeAll(keepingCapacity: true); states.removeAll(keepingCapacity: true)
        actions.removeAll(keepingCapacity: true); rewards.removeAll(keepingCapacity: true)
        done.removeAll(keepingCapacity: true); times.removeAll(keepingCapacity: true)
    }
}

/// A transition batch with its source, as stored in a feature stream.
public struct SourcedTransitionBatch: Sendable, Equatable {
    public var batch: TransitionBatch
    public var source: FeatureBatchSource
    public init(batch: TransitionBatch, source: FeatureBatchSource) { self.batch = batch; self.source = source }
}
