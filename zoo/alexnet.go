package zoo

import "fmt"

// alexNetSize is the only input size the AlexNet builder accepts. At 224x224
// the last feature map is already 6x6, so torchvision's
// AdaptiveAvgPool2d((6, 6)) is the identity and is left out of the graph; at
// other sizes it would need a size-dependent pooling that ONNX expresses only
// for exact divisors, and the first Gemm's 9216 inputs are fixed anyway.
const alexNetSize = 224

// buildAlexNet builds torchvision's AlexNet (features, flatten, classifier),
// with the dropout layers left out as they are at inference. Node names are
// torchvision's module paths ("features.3", "classifier.4").
func buildAlexNet(b *builder, size int) (input, output string) {
	if size != alexNetSize {
		b.failf("alexnet takes only %dx%d input, not %d", alexNetSize, alexNetSize, size)
		return "input", "logits"
	}
	x := b.input("input", size, true)
	layers := []struct {
		out, k, stride, pad int
		pool                bool // a MaxPool(3, 2) follows the ReLU
	}{
		{64, 11, 4, 2, true},
		{192, 5, 1, 2, true},
		{384, 3, 1, 1, false},
		{256, 3, 1, 1, false},
		{256, 3, 1, 1, true},
	}
	i := 0
	for _, l := range layers {
		x = b.conv(fmt.Sprintf("features.%d", i), x, l.out, convCfg{k: l.k, stride: l.stride, pad: l.pad})
		x = b.relu(fmt.Sprintf("features.%d", i+1), x)
		i += 2
		if l.pool {
			x = b.maxPool(fmt.Sprintf("features.%d", i), x, 3, 2, 0)
			i++
		}
	}
	x = b.flatten("flatten", x)
	x = b.gemm("classifier.1", x, 4096, 1)
	x = b.relu("classifier.2", x)
	x = b.gemm("classifier.4", x, 4096, 1)
	x = b.relu("classifier.5", x)
	x = b.gemm("classifier.6", x, 1000, logitGain)
	return "input", b.rename(x, "logits")
}
