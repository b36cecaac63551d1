// Bundles the web app (www/) with the node compiled to wasm (pkg/, from scripts/build-web.sh).
const path = require('path');
const HtmlWebpackPlugin = require('html-webpack-plugin');

module.exports = {
  mode: process.env.NODE_ENV === 'development' ? 'development' : 'production',
  entry: { index: './www/index.mjs', bench: './www/bench.mjs', sw: './www/sw.js' },
  output: {
    path: path.resolve(__dirname, 'www/dist'),
    // The service worker keeps its name: its address is its scope's.
    filename: (data) => (data.chunk.name === 'sw' ? 'sw.js' : '[name].[contenthash].js'),
    clean: true,
  },
  experiments: { asyncWebAssembly: true },
  // The playground's styles are imported as text (www/playground.css) and injected.
  module: { rules: [{ test: /\.css$/, type: 'asset/source' }] },
  performance: { hints: false },
  plugins: [
    new HtmlWebpackPlugin({ template: './www/index.html', chunks: ['index'] }),
    new HtmlWebpackPlugin({ template: './www/bench.html', filename: 'bench.html', chunks: ['bench'] }),
  ],
};
