package tokenizer

import "errors"

type normStep struct{}
type metaspace struct{}

func applyNorm(dst []byte, steps []normStep, s string) []byte { return append(dst, s...) }

func (t *Tokenizer) encodeSentencePiece(st *encState, dst []int, text string, atStart bool) []int {
	return dst
}

func LoadHF(path, configPath string) (*Tokenizer, error) { return nil, errors.New("todo") }
func LoadGPT2(enc, bpe string) (*Tokenizer, error)      { return nil, errors.New("todo") }
