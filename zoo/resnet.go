package zoo

import "fmt"

// buildResNet18 builds torchvision's resnet18: a 7x7 stem, four stages of
// two BasicBlocks each and a 1000-way fully connected layer, with every
// BatchNorm folded into the bias of the conv before it. GlobalAveragePool
// stands for AdaptiveAvgPool2d(1), so any input side that is a multiple of
// 32 works. Node names are torchvision's module paths ("layer2.0.conv1",
// "layer2.0.downsample.0").
func buildResNet18(b *builder, size int) (input, output string) {
	x := b.input("input", size, true)
	x = b.conv("conv1", x, 64, convCfg{k: 7, stride: 2, pad: 3})
	x = b.relu("relu", x)
	x = b.maxPool("maxpool", x, 3, 2, 1)
	for stage, width := range []int{64, 128, 256, 512} {
		for block := range 2 {
			stride := 1
			if stage > 0 && block == 0 {
				stride = 2
			}
			x = basicBlock(b, fmt.Sprintf("layer%d.%d", stage+1, block), x, width, stride)
		}
	}
	x = b.globalAvgPool("avgpool", x)
	x = b.flatten("flatten", x)
	x = b.gemm("fc", x, 1000, logitGain)
	return "input", b.rename(x, "logits")
}

// basicBlock is relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), where
// the shortcut is a strided 1x1 conv (+BN) when the shape changes.
func basicBlock(b *builder, name, x string, width, stride int) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	y := b.conv(name+".conv1", x, width, convCfg{k: 3, stride: stride, pad: 1})
	y = b.relu(name+".relu1", y)
	y = b.conv(name+".conv2", y, width, convCfg{k: 3, stride: 1, pad: 1, gain: residualGain})
	short := x
	if stride != 1 || in[1] != int64(width) {
		short = b.conv(name+".downsample.0", x, width, convCfg{k: 1, stride: stride})
	}
	y = b.add(name+".add", y, short)
	return b.relu(name+".relu2", y)
}
