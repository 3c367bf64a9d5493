declare module "cytoscape-svg" {
  const extension: cytoscape.Ext;
  export default extension;
}

declare module "*.css";
