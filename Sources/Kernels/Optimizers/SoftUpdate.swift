/// Polyak averaging of a target network (DDPG, BCQ): target ← τ·online + (1−τ)·target over the
/// `count` floats of one flat parameter buffer. Written as the two products rather than
/// target += τ·(online − target) so that τ = 1 copies exactly and τ = 0 changes nothing.
public func soft_update(
    target: UnsafeMutablePointer<Float>, online: UnsafePointer<Float>, tau: Float, count: Int
) {
    let keep = 1 - tau
    for i in 0..<count { target[i] = tau * online[i] + keep * target[i] }
}
