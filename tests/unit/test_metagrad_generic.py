"""The second-order outer loop (metarl.outer.metagrad) is generic in the learner and the objective
(metarl.protocols): on a linear-quadratic toy with a known critic it meta-learns a parametric loss
in the right direction, and the check fails for a learner that never updates its policy."""
import ast
import inspect
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl.outer import metagrad
from metarl.outer.metagrad import MetaGradConfig, MetaTrainer
from metarl.protocols import Learner, Objective

N_REPLAY = 64


@struct.dataclass
class ToyState:
    policy: dict        # {"W": (2, 2)}: pi_W(s) = W s
    critic: dict        # {"A": (2, 2)}: a*(s) = A s, Q(s, a) = -|a - A s|^2 (known, never fitted)
    obs: jax.Array      # (N, 2) replay states
    action: jax.Array   # (N, 2) replay actions, an expert's: a*(s) + noise
    step: jax.Array
    key: jax.Array


class ToyLearner:
    """A 2-D linear-quadratic learner: linear policy, the optimal critic known exactly, a replay of
    random states with an expert's actions; policy steps are SGD (``frozen``: none at all)."""

    obs_size = act_size = 2
    steps_per_block = 1

    def __init__(self, a_star, policy_lr=0.1, frozen=False):
        self.a_star = jnp.asarray(a_star, jnp.float32)
        self.policy_lr, self.frozen = policy_lr, frozen

    def pi(self, policy_params, obs):
        return obs @ policy_params["W"].T

    def q1(self, critic_params, obs, action):
        return -jnp.sum(jnp.square(action - obs @ critic_params["A"].T), axis=-1)

    def sample_task(self, key, split):
        return jnp.zeros(())

    def init(self, key, task):
        k_obs, k_noise, k_run = jax.random.split(key, 3)
        obs = jax.random.normal(k_obs, (N_REPLAY, 2))
        action = obs @ self.a_star.T + 0.05 * jax.random.normal(k_noise, (N_REPLAY, 2))
        return ToyState({"W": jnp.zeros((2, 2))}, {"A": self.a_star}, obs, action,
                        jnp.zeros((), jnp.int32), k_run)

    def interact_and_fit_critic(self, s):
        return s.replace(step=s.step + self.steps_per_block)  # the critic is already exact

    def draw_batch(self, s, n):
        key, k = jax.random.split(s.key)
        idx = jax.random.randint(k, (n,), 0, N_REPLAY)
        return s.replace(key=key), {"obs": s.obs[idx], "action": s.action[idx]}

    def policy_params(self, s):
        return s.policy

    def critic_params(self, s):
        return s.critic

    def meta_loss(self, policy_params, critic_params, batch):
        return -self.q1(critic_params, batch["obs"], self.pi(policy_params, batch["obs"])).mean()

    def apply_policy_grad(self, s, grad):
        if self.frozen:
            return s
        return s.replace(policy=jax.tree_util.tree_map(lambda p, g: p - self.policy_lr * g, s.policy, grad))

    def env_steps(self, s):
        return s.step

    def reset_stats(self, s):
        return s

    def mean_completed_return(self, s):
        """-|pi(s) - a*(s)|^2 over the replay states: 0 for the optimal policy."""
        return self.q1(s.critic, s.obs, self.pi(s.policy, s.obs)).mean()


class ScaledRegression:
    """L_w(phi; batch) = w mean |pi_phi(s) - a|^2: w > 0 imitates the replay's (expert) actions,
    w < 0 flees them. Starts at w = -0.1, the wrong sign."""

    def init(self, key, obs_size, act_size):
        return {"w": jnp.full((), -0.1)}

    def policy_loss(self, obj_params, policy_params, batch, learner, critic_params=None):
        err = learner.pi(policy_params, batch["obs"]) - batch["action"]
        return obj_params["w"] * jnp.sum(jnp.square(err), axis=-1).mean()


A1 = [[1.0, 0.5], [-0.5, 1.0]]
A2 = [[-0.8, 0.0], [0.3, 0.6]]
CFG = MetaGradConfig(agents_per_env=2, meta_iterations=30, steps_per_iteration=10, meta_lr=0.01,
                     lookahead_step=0.05, meta_batch=32, warm_start_steps=0)


def _meta_train(learners):
    trainer = MetaTrainer(learners, ScaledRegression(), CFG)
    ms = trainer.init(jax.random.PRNGKey(0))
    it = jax.jit(trainer.iteration)
    hist = []
    for _ in range(CFG.meta_iterations):  # 30 x 10 = 300 meta-steps of w
        ms, m = it(ms)
        hist.append(jax.device_get(m))
    ret = np.array([h["return"] for h in hist])      # (iterations, groups)
    jv = np.array([h["meta_loss"] for h in hist])
    _meta_train.alignment = np.array([h["alignment"] for h in hist])
    return float(ms.alpha["w"]), ret, jv


def _learned(ret, jv):
    """Meta-training worked: the meta-loss fell to a tenth and the learners' own policies reach
    near-optimal return, in every env group."""
    return bool((jv[-1] < 0.1 * jv[0]).all() and (ret[-1] > 0.1 * ret[0]).all())


def test_meta_gradient_learns_the_sign_and_scale_of_a_regression_loss():
    learners = [ToyLearner(A1), ToyLearner(A2)]
    assert all(isinstance(lr, Learner) for lr in learners) and isinstance(ScaledRegression(), Objective)
    w, ret, jv = _meta_train(learners)
    assert np.isfinite(ret).all() and np.isfinite(jv).all()
    assert w > 0.1, w                        # from -0.1 (fleeing the expert) to imitating it
    assert _learned(ret, jv), (ret[[0, -1]], jv[[0, -1]])
    assert (ret[-1] > -0.05).all(), ret[-1]  # |W - A*| ~ 0: the objective trained the policy
    # alignment = cos(grad L_w, grad of the learner's own loss -Q): w < 0 points the policy away
    # from the expert, i.e. against -Q's descent (cos ~ -1); once w > 0 they agree while the policy
    # is far from the optimum (near it both gradients are the expert actions' noise, cos ~ 0)
    cos = _meta_train.alignment
    assert cos.shape == (CFG.meta_iterations, 2)
    assert (cos[0] < -0.9).all() and (cos[1:6] > 0.9).all(), cos[:6]
    assert np.abs(cos[-10:].mean(0)).max() < 0.3, cos[-10:]

    # the same meta-gradient through learners that never update: the criterion fails
    w_frozen, ret_f, jv_f = _meta_train([ToyLearner(A1, frozen=True), ToyLearner(A2, frozen=True)])
    assert w_frozen > -0.1                   # alpha still gets the right direction ...
    assert not _learned(ret_f, jv_f)         # ... but nothing is learned without policy updates
    np.testing.assert_allclose(ret_f[-1], ret_f[0], rtol=1e-6)


def test_metagenrl_pieces_satisfy_the_protocols_and_the_outer_loop_names_none_of_them():
    from metarl.inner.td3 import TD3Agent, TD3Config
    from metarl.objectives.backward_lstm import BackwardLSTMObjective

    agent = TD3Agent(SimpleNamespace(observation_size=3, action_size=2), TD3Config(hidden=(8,)))
    assert isinstance(agent, Learner) and isinstance(BackwardLSTMObjective(), Objective)
    assert (agent.obs_size, agent.act_size, agent.steps_per_block) == (3, 2, 2)
    imported = []
    for node in ast.walk(ast.parse(inspect.getsource(metagrad))):
        if isinstance(node, ast.ImportFrom):
            imported += [node.module, *(a.name for a in node.names)]
        elif isinstance(node, ast.Import):
            imported += [a.name for a in node.names]
    bad = [n for n in imported if "td3" in n.lower() or "metagenrl" in n.lower()]
    assert not bad, bad
