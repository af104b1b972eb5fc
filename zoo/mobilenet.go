package zoo

import "fmt"

// buildMobileNetV2 builds torchvision's mobilenet_v2 at width 1.0: a 3x3
// stem, seventeen inverted-residual blocks, a 1x1 conv to 1280 channels and
// a 1000-way classifier, with BatchNorm folded into conv biases and ReLU6 as
// Clip(0, 6). GlobalAveragePool stands for the adaptive average pool, so any
// input side that is a multiple of 32 works. Node names are torchvision's
// module paths ("features.3.conv.1.0"); the dropout before the classifier is
// left out as it is at inference.
func buildMobileNetV2(b *builder, size int) (input, output string) {
	x := b.input("input", size, true)
	x = convBNReLU6(b, "features.0", x, 32, 3, 2, 1)
	stages := []struct{ t, c, n, s int }{
		{1, 16, 1, 1},
		{6, 24, 2, 2},
		{6, 32, 3, 2},
		{6, 64, 4, 2},
		{6, 96, 3, 1},
		{6, 160, 3, 2},
		{6, 320, 1, 1},
	}
	idx := 1
	for _, st := range stages {
		for i := range st.n {
			stride := 1
			if i == 0 {
				stride = st.s
			}
			x = invertedResidual(b, fmt.Sprintf("features.%d", idx), x, st.c, stride, st.t)
			idx++
		}
	}
	x = convBNReLU6(b, fmt.Sprintf("features.%d", idx), x, 1280, 1, 1, 1)
	x = b.globalAvgPool("avgpool", x)
	x = b.flatten("flatten", x)
	x = b.gemm("classifier.1", x, 1000, logitGain)
	return "input", b.rename(x, "logits")
}

// convBNReLU6 is torchvision's Conv2dNormActivation: conv (name.0) with the
// BN (name.1) folded in, then ReLU6 (name.2).
func convBNReLU6(b *builder, name, x string, out, k, stride, group int) string {
	x = b.conv(name+".0", x, out, convCfg{k: k, stride: stride, pad: (k - 1) / 2, group: group})
	return b.relu6(name+".2", x)
}

// invertedResidual is torchvision's InvertedResidual: an optional 1x1
// expansion, a 3x3 depthwise conv, a linear 1x1 projection (its BN folded),
// and a residual Add when the stride is 1 and the width is unchanged.
func invertedResidual(b *builder, name, x string, out, stride, expand int) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	cin := int(in[1])
	hidden := cin * expand
	residual := stride == 1 && cin == out
	y := x
	i := 0
	if expand != 1 {
		y = convBNReLU6(b, fmt.Sprintf("%s.conv.%d", name, i), y, hidden, 1, 1, 1)
		i++
	}
	y = convBNReLU6(b, fmt.Sprintf("%s.conv.%d", name, i), y, hidden, 3, stride, hidden)
	i++
	gain := 1.0
	if residual {
		gain = residualGain
	}
	y = b.conv(fmt.Sprintf("%s.conv.%d", name, i), y, out, convCfg{k: 1, stride: 1, gain: gain})
	if residual {
		y = b.add(name+".add", x, y)
	}
	return y
}
