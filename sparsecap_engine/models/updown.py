"""Up-Down LSTM captioner (Anderson et al. 2018), layer by layer as in the reference (§1.2 of seed-methods)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecap_engine.models.base import Memory, State, masked_mean


class UpDownCore(nn.Module):
    """One decoding step: attention LSTM → additive attention over regions → language LSTM."""

    def __init__(self, input_encoding_size: int, rnn_size: int, att_hid_size: int, drop_prob_lm: float):
        super().__init__()
        #: attention LSTM, input = [h_lang(t-1), fc_emb, x_t]
        self.att_lstm = nn.LSTMCell(input_encoding_size + 2 * rnn_size, rnn_size)
        #: language LSTM, input = [context, h_att]
        self.lang_lstm = nn.LSTMCell(2 * rnn_size, rnn_size)
        #: h2att: projects h_att into the attention space
        self.h2att = nn.Linear(rnn_size, att_hid_size)
        #: alpha_net: scores e = w_α·tanh(p_att + h2att(h_att))
        self.alpha_net = nn.Linear(att_hid_size, 1)
        self.dropout = nn.Dropout(drop_prob_lm)

    def attend(self, h_att: Tensor, att_emb: Tensor, p_att: Tensor, mask: Tensor) -> Tensor:
        """Additive attention; the mask is applied after the softmax and the weights renormalised (as the reference)."""
        e = self.alpha_net(torch.tanh(p_att + self.h2att(h_att).unsqueeze(1))).squeeze(-1)  # (B, N)
        alpha = F.softmax(e, dim=-1) * mask
        alpha = alpha / alpha.sum(-1, keepdim=True).clamp_min(1e-12)
        return torch.bmm(alpha.unsqueeze(1), att_emb).squeeze(1)

    def forward(self, x: Tensor, fc: Tensor, att_emb: Tensor, p_att: Tensor, mask: Tensor, state: State):
        h, c = state["h"], state["c"]  # (B, 2, R): index 0 = attention LSTM, 1 = language LSTM
        h_att, c_att = self.att_lstm(torch.cat([h[:, 1], fc, x], dim=1), (h[:, 0], c[:, 0]))
        ctx = self.attend(h_att, att_emb, p_att, mask)
        h_lang, c_lang = self.lang_lstm(torch.cat([ctx, h_att], dim=1), (h[:, 1], c[:, 1]))
        new = {"h": torch.stack([h_att, h_lang], 1), "c": torch.stack([c_att, c_lang], 1)}
        return self.dropout(h_lang), new


class UpDown(nn.Module):
    """Up-Down decoder over region features.

    ``embed`` Embedding(V, E)→ReLU→Dropout; ``fc_embed``/``att_embed`` Linear(D, R)→ReLU→Dropout;
    ``ctx2att`` Linear(R, A) precomputed once per image; ``core`` (two LSTMCells + attention); ``logit`` Linear(R, V).
    """

    def __init__(
        self,
        vocab_size: int,
        feat_dim: int,
        rnn_size: int = 1000,
        input_encoding_size: int = 1000,
        att_hid_size: int = 512,
        drop_prob_lm: float = 0.5,
        **_: object,
    ):
        super().__init__()
        self.vocab_size, self.rnn_size = vocab_size, rnn_size
        self.embed = nn.Sequential(nn.Embedding(vocab_size, input_encoding_size), nn.ReLU(), nn.Dropout(drop_prob_lm))
        self.fc_embed = nn.Sequential(nn.Linear(feat_dim, rnn_size), nn.ReLU(), nn.Dropout(drop_prob_lm))
        self.att_embed = nn.Sequential(nn.Linear(feat_dim, rnn_size), nn.ReLU(), nn.Dropout(drop_prob_lm))
        self.ctx2att = nn.Linear(rnn_size, att_hid_size)
        self.core = UpDownCore(input_encoding_size, rnn_size, att_hid_size, drop_prob_lm)
        self.logit = nn.Linear(rnn_size, vocab_size)

    def prepare(self, visual: dict[str, Tensor]) -> Memory:
        """Embed regions once per image: fc = mean of regions; padded regions are zeroed after ``att_embed``."""
        feats, mask = visual["feats"], visual["mask"]
        fc = self.fc_embed(masked_mean(feats, mask))
        att = self.att_embed(feats) * mask.unsqueeze(-1)
        return {"fc": fc, "att": att, "p_att": self.ctx2att(att), "mask": mask}

    def init_state(self, memory: Memory) -> State:
        b = memory["fc"].shape[0]
        zeros = memory["fc"].new_zeros(b, 2, self.rnn_size)
        return {"h": zeros, "c": zeros.clone()}

    def step(self, memory: Memory, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        x = self.embed(tokens)
        out, state = self.core(x, memory["fc"], memory["att"], memory["p_att"], memory["mask"], state)
        return F.log_softmax(self.logit(out).float(), dim=-1), state

    def forward(self, memory: Memory, tokens: Tensor) -> Tensor:
        state = self.init_state(memory)
        outs = []
        for t in range(tokens.shape[1]):
            logp, state = self.step(memory, tokens[:, t], state)
            outs.append(logp)
        return torch.stack(outs, dim=1)
