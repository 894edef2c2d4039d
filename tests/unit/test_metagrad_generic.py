"""The second-order outer loop (metarl.outer.metagrad) is generic in the learner and the objective
(metarl.protocols): on a linear-quadratic toy with a known critic it meta-learns a parametric loss
in the right direction, and the check fails for a learner that never updates its policy."""
import ast
import dataclasses
import inspect
from types import SimpleNamespace

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
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


# ---- the two second-order modes (MetaGradConfig.second_order) -------------------------------------

def _assert_trees_close(a, b, rtol=1e-4):
    """Leafwise allclose at rtol, atol = rtol x the tree's largest magnitude (float32 sums)."""
    fa, fb = (np.asarray(jax.flatten_util.ravel_pytree(t)[0]) for t in (a, b))
    scale = np.abs(fa).max()
    assert scale > 0
    np.testing.assert_allclose(fa, fb, rtol=rtol, atol=rtol * scale)


def _metagenrl_setup(key, B=4, T=6, obs=3, act=2):
    """A small TD3 learner, the backward-LSTM objective and a 2B x T replay batch with an episode
    end, a terminal and masked steps."""
    from metarl.inner.td3 import TD3Agent, TD3Config
    from metarl.objectives.backward_lstm import BackwardLSTMObjective, MetaGenRLObjective, init_objective

    agent = TD3Agent(SimpleNamespace(observation_size=obs, action_size=act), TD3Config(hidden=(16,)))
    objective = BackwardLSTMObjective(MetaGenRLObjective(lstm_features=8, hidden=8))
    k = jax.random.split(key, 8)
    pol = agent.policy_net.init(k[0], jnp.zeros(obs))
    cri = agent.critic_net.init(k[1], jnp.zeros(obs), jnp.zeros(act))
    alpha = init_objective(k[2], objective.module)
    n = 2 * B
    batch = {"obs": jax.random.normal(k[3], (n, T, obs)), "next_obs": jax.random.normal(k[4], (n, T, obs)),
             "action": jax.random.uniform(k[5], (n, T, act), minval=-1, maxval=1),
             "reward": jax.random.normal(k[6], (n, T)),
             "done": jnp.zeros((n, T)).at[:, 3].set(1.0), "terminal": jnp.zeros((n, T)).at[0, 3].set(1.0),
             "mask": jnp.ones((n, T)).at[1, 4:].set(0.0).at[B + 1, 5].set(0.0)}
    return agent, objective, alpha, pol, cri, batch


def test_forward_and_reverse_second_order_give_the_same_meta_gradient():
    """reverse-over-forward (jvp of L_alpha along v = grad J at phi') and reverse-over-reverse agree
    on J, on the policy's gradient grad_phi L_alpha and on grad_alpha J (float32): on a small
    MetaGenRL setup (TD3 learner, backward-LSTM objective) and on the toy."""
    agent, objective, alpha, pol, cri, batch = _metagenrl_setup(jax.random.PRNGKey(0))
    out = {m: jax.jit(metagrad.meta_value_and_grad(objective, agent, 0.5, m))(alpha, pol, cri, batch)
           for m in metagrad.SECOND_ORDER}
    (j_r, gpol_r), ga_r = out["reverse"]
    (j_f, gpol_f), ga_f = out["forward"]
    np.testing.assert_allclose(float(j_f), float(j_r), rtol=1e-6)
    _assert_trees_close(gpol_f, gpol_r, rtol=1e-6)
    _assert_trees_close(ga_f, ga_r, rtol=1e-4)

    learner = ToyLearner(A1)
    s = learner.init(jax.random.PRNGKey(1), None)
    s = s.replace(policy={"W": jnp.array([[0.3, -0.2], [0.1, 0.4]])})
    _, b = learner.draw_batch(s, 16)
    toy = {m: metagrad.meta_value_and_grad(ScaledRegression(), learner, 0.05, m)(
        {"w": jnp.asarray(0.7)}, s.policy, s.critic, b) for m in metagrad.SECOND_ORDER}
    np.testing.assert_allclose(float(toy["forward"][1]["w"]), float(toy["reverse"][1]["w"]), rtol=1e-5)
    assert abs(float(toy["reverse"][1]["w"])) > 1e-3


def test_a_meta_iteration_moves_alpha_alike_in_both_modes():
    """One whole meta-iteration on the toy (2 env groups x 2 agents, 10 blocks, each an Adam step
    on alpha, policy steps on L_w in between): alpha, the meta-loss and the alignment after it
    agree across the two modes."""
    res = {}
    for mode in metagrad.SECOND_ORDER:
        cfg = dataclasses.replace(CFG, second_order=mode)
        trainer = MetaTrainer([ToyLearner(A1), ToyLearner(A2)], ScaledRegression(), cfg)
        ms, m = jax.jit(trainer.iteration)(trainer.init(jax.random.PRNGKey(0)))
        res[mode] = (float(ms.alpha["w"]), jax.device_get(m))
    (w_r, m_r), (w_f, m_f) = res["reverse"], res["forward"]
    assert w_r > -0.1 + 5 * CFG.meta_lr, w_r  # 10 Adam steps of about meta_lr each, upward
    np.testing.assert_allclose(w_f, w_r, rtol=1e-5)
    for k in ("meta_loss", "alignment", "return"):
        np.testing.assert_allclose(m_f[k], m_r[k], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_metagenrl_meta_iteration_moves_alpha_alike_in_both_modes():
    """One whole MetaGenRL meta-iteration (TD3 learners on goal_point, 2 agents, 8 blocks, each an
    Adam step on alpha): the objective after it, the meta-loss and the alignment agree across
    the two modes."""
    from metarl import envs
    from metarl.algorithms.metagenrl.algorithm import MetaGenRLConfig, make_trainer
    from metarl.inner.td3 import TD3Config

    base = MetaGenRLConfig(td3=TD3Config(hidden=(16,), random_steps=4, replay_size=64, batch_size=2, seq_len=4),
                           agents_per_env=2, steps_per_iteration=16, meta_batch=4, warm_start_steps=8,
                           lookahead_step=0.5, lstm_features=8, objective_hidden=8)
    env = envs.make("goal_point")
    res = {}
    for mode in metagrad.SECOND_ORDER:
        trainer = make_trainer([env], dataclasses.replace(base, second_order=mode))
        ms = trainer.init(jax.random.PRNGKey(0))
        a0 = ms.alpha
        ms, m = jax.jit(trainer.iteration)(ms)
        res[mode] = (a0, ms.alpha, jax.device_get(m))
    a0, a_r, m_r = res["reverse"]
    _, a_f, m_f = res["forward"]
    delta = lambda a: jax.tree_util.tree_map(lambda x, y: x - y, a, a0)
    assert np.abs(np.asarray(jax.flatten_util.ravel_pytree(delta(a_r))[0])).max() > 1e-5  # alpha moved
    _assert_trees_close(a_f, a_r, rtol=1e-5)
    _assert_trees_close(delta(a_f), delta(a_r), rtol=1e-3)  # Adam's steps: sign(g) ~ lr, alike
    np.testing.assert_allclose(m_f["meta_loss"], m_r["meta_loss"], rtol=1e-4)
    np.testing.assert_allclose(m_f["alignment"], m_r["alignment"], rtol=1e-4, atol=1e-5)


def test_a_bad_second_order_mode_is_refused_in_one_line():
    for bad in ("backward", "", "Forward"):
        with pytest.raises(ValueError) as e:
            MetaGradConfig(second_order=bad).validate()
        msg = str(e.value)
        assert "\n" not in msg and repr(bad) in msg and "reverse, forward" in msg, msg
        with pytest.raises(ValueError, match="reverse, forward"):
            metagrad.meta_value_and_grad(ScaledRegression(), ToyLearner(A1), 0.1, bad)
    assert MetaGradConfig().validate().second_order in metagrad.SECOND_ORDER
