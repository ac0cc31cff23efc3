// Building RL inputs from rows: the state is the user's row followed by the rows of the last H
// items (DBRL); the critic's input is the state beside the action.

/// out[B×(H+1)×D]: out[b,0,:] = userRow(users[b]); out[b,1+i,:] = itemRow(history[b,i]) for
/// history[B×H]. Item id 0 pads a history shorter than H and gives a zero row (itemRow is not
/// called for it); so does any id whose row is nil (never trained). User id 0 is the user OOV
/// id, a real row, so it is looked up like any other.
public func state_gather_forward(
    out: UnsafeMutablePointer<Float>, users: UnsafePointer<Int32>, history: UnsafePointer<Int32>,
    B: Int, H: Int, D: Int,
    userRow: (Int32) -> UnsafePointer<Float>?, itemRow: (Int32) -> UnsafePointer<Float>?
) {
    for b in 0..<B {
        let dst = out + b * (H + 1) * D
        if let src = userRow(users[b]) { dst.update(from: src, count: D) } else { dst.update(repeating: 0, count: D) }
        for i in 0..<H {
            let id = history[b * H + i], d = dst + (1 + i) * D
            if id != 0, let src = itemRow(id) { d.update(from: src, count: D) } else { d.update(repeating: 0, count: D) }
        }
    }
}

/// Accumulates: duserRows[userLocal[b],:] += dout[b,0,:] and
/// ditemRows[itemLocal[b,i],:] += dout[b,1+i,:], except where history[b,i] == 0: padding gets no
/// gradient (its itemLocal entry is not read). Local indices are those of the batch's unique ids,
/// as for `embedding_backward`; a repeated item collects the sum of its gradients.
public func state_gather_backward(
    duserRows: UnsafeMutablePointer<Float>, ditemRows: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, userLocal: UnsafePointer<Int32>, itemLocal: UnsafePointer<Int32>,
    history: UnsafePointer<Int32>, B: Int, H: Int, D: Int
) {
    for b in 0..<B {
        let src = dout + b * (H + 1) * D
        let du = duserRows + Int(userLocal[b]) * D
        for d in 0..<D { du[d] += src[d] }
        for i in 0..<H where history[b * H + i] != 0 {
            let g = src + (1 + i) * D, di = ditemRows + Int(itemLocal[b * H + i]) * D
            for d in 0..<D { di[d] += g[d] }
        }
    }
}

/// out[B×(D1+D2)]: out[b,:] = [x[b,:] | y[b,:]] for x[B×D1], y[B×D2].
public func concat2_forward(
    out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, y: UnsafePointer<Float>,
    B: Int, D1: Int, D2: Int
) {
    let W = D1 + D2
    for b in 0..<B {
        (out + b * W).update(from: x + b * D1, count: D1)
        (out + b * W + D1).update(from: y + b * D2, count: D2)
    }
}

/// Accumulates the split of dout[B×(D1+D2)]: dx[B×D1] += dout[:, ..<D1], dy[B×D2] += dout[:, D1...].
/// Either may be nil when that input needs no gradient (e.g. DDPG's actor step wants only the
/// gradient to the action).
public func concat2_backward(
    dx: UnsafeMutablePointer<Float>?, dy: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
    B: Int, D1: Int, D2: Int
) {
    let W = D1 + D2
    for b in 0..<B {
        let g = dout + b * W
        if let dx { let t = dx + b * D1; for d in 0..<D1 { t[d] += g[d] } }
        if let dy { let t = dy + b * D2; for d in 0..<D2 { t[d] += g[D1 + d] } }
    }
}

// The recent-items path: the policy's state vector h gets the output rows of the state's last
// R items, h[b] += w · Σ_{i=H−R}^{H−1} E[history[b,i]]. An item's score h·E_j then holds
// w·Σ E_i·E_j, an item–item similarity in the table the scores are made with — the shape of a
// next-item process driven by the recently consumed items, learned from every step's gradient on
// E instead of only the few steps that touch an input row.

/// h[b,:] += weight · Σ E[history[b,i],:] over the last R positions i = H−R ..< H, for ids in
/// 2 ..< N (0 pads, 1 is the OOV id, ids ≥ N have no row yet: all skipped). h[B×D], E[N'×D].
public func recent_items_forward(
    h: UnsafeMutablePointer<Float>, E: UnsafePointer<Float>, history: UnsafePointer<Int32>,
    B: Int, H: Int, R: Int, D: Int, N: Int, weight: Float
) {
    let first = max(H - R, 0)
    for b in 0..<B {
        let hb = h + b * D
        for i in first..<H {
            let id = Int(history[b * H + i])
            guard id >= 2, id < N else { continue }
            let e = E + id * D
            for d in 0..<D { hb[d] += weight * e[d] }
        }
    }
}

/// Accumulates dE[history[b,i],:] += weight · dh[b,:] over the positions and ids
/// `recent_items_forward` read (a repeated item collects the sum).
public func recent_items_backward(
    dE: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>, history: UnsafePointer<Int32>,
    B: Int, H: Int, R: Int, D: Int, N: Int, weight: Float
) {
    let first = max(H - R, 0)
    for b in 0..<B {
        let g = dh + b * D
        for i in first..<H {
            let id = Int(history[b * H + i])
            guard id >= 2, id < N else { continue }
            let de = dE + id * D
            for d in 0..<D { de[d] += weight * g[d] }
        }
    }
}
