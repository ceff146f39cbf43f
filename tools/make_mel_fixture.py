#!/usr/bin/env python3
# requires: librosa==0.11.0, numpy==2.2.6 (pulling in scipy==1.17.1, soundfile==0.14.0)
#   python3 -m venv /tmp/mel-venv && /tmp/mel-venv/bin/pip install librosa==0.11.0 numpy==2.2.6
#   /tmp/mel-venv/bin/python tools/make_mel_fixture.py
"""Write the reference mel spectrogram of the demo speech for the Rust mel front-end's test.

Runs SyncTalk_2D's `utils.melspectrogram` pipeline step by step, as its `AudDataset` does:
librosa.load at 16 kHz, scipy pre-emphasis, librosa.stft (n_fft 800, hop 200, win 800, centred
with zero padding), magnitude, librosa's default Slaney mel filterbank (80 bands, 55-7600 Hz),
20*log10(max(1e-5, x)) - 20, then clip(8 * ((S + 100) / 100) - 4, -4, 4), transposed to [T, 80].

The output is raw little-endian float32, T rows of 80 bands (no header).
"""

import argparse

import librosa
import numpy as np
import scipy.signal


def synctalk_mel(path):
    wav = librosa.load(path, sr=16000)[0]
    emphasised = scipy.signal.lfilter([1, -0.97], [1], wav)
    spectrum = np.abs(librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800))
    mel_basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    level_db = 20 * np.log10(np.maximum(1e-5, np.dot(mel_basis, spectrum))) - 20
    return np.clip((2 * 4.0) * ((level_db + 100) / 100) - 4.0, -4.0, 4.0).T


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", default="models/demo/speech.wav")
    parser.add_argument("--out", default="tests/data/speech_mel.f32")
    args = parser.parse_args()

    mel = synctalk_mel(args.wav)
    mel.astype("<f4").tofile(args.out)
    print(f"{args.out}: {mel.shape[0]} frames x {mel.shape[1]} bands")


if __name__ == "__main__":
    main()
